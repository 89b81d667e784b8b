import { AgentStream, type AgentStreamContext } from '../lifecycle/agent-stream.js'
import { Audience } from '../lifecycle/audience.js'
import { ReplayHistory } from '../lifecycle/replay-history.js'
import { Subscriber } from '../lifecycle/subscriber.js'
import type { LifecycleLogger } from '../lifecycle/types.js'
import type { StreamInfo } from './records.js'

/** Where an owned stream's output goes: the cluster. */
export interface OwnerOutlet {
  /** A sample the state machine accepted, as its JSON text. */
  sample (json: string, intervalSeconds: number): void
  end (reason: string): void
  fail (err: Error): void
}

/** The cluster's demand for an agent, as the owner's state machine needs it. */
export interface ClusterDemand {
  /** The smallest interval any SSE client in the cluster asks for, or null with no clients. */
  clientInterval: number | null
  /** The smallest manual hold interval in the cluster, or null with no hold. */
  hold: number | null
}

/**
 * The rest of the cluster, as one subscriber of the owner's state machine: it stands for
 * every client and hold in the cluster, at their smallest interval, so the single-process
 * state machine runs unchanged on the owner. Through it the cluster hears how the stream
 * ended; samples take another way (the context's `onSampleAccepted`).
 */
class ClusterSubscriber extends Subscriber {
  detached = false

  constructor (intervalSeconds: number, lastEventId: number, outlet: OwnerOutlet) {
    super({
      intervalSeconds,
      // Nothing to catch up on: the cluster's clients have their own replay.
      lastEventId,
      onSample () {},
      onEnd: (reason) => { if (!this.detached) outlet.end(reason) },
      onError: (err) => { if (!this.detached) outlet.fail(err) }
    })
  }
}

/** An agent stream this instance runs because it holds the agent's lease. */
export class OwnedStream {
  readonly stream: AgentStream
  /** The lease is lost or the instance closes: the stream is being stopped and tells the cluster nothing more. */
  abandoned = false
  /**
   * The stream ended for the cluster (cancelled, failed, ended by the agent): it only stops now.
   * A late read of the cluster's demand must not restart it; whoever still wants the agent takes it anew.
   */
  private finished = false
  // Only the newest sample is kept here: the cluster's clients resume from their own instance's history.
  private readonly history = new ReplayHistory(1)
  private clusterSubscriber: ClusterSubscriber | null = null

  private readonly outlet: OwnerOutlet

  constructor (readonly agentId: string, context: AgentStreamContext, outlet: OwnerOutlet) {
    this.outlet = {
      sample: outlet.sample,
      end: (reason) => { this.finish(); outlet.end(reason) },
      fail: (err) => { this.finish(); outlet.fail(err) }
    }
    // Ids given here stay on this instance: the cluster's ids are assigned by Redis when a sample is published.
    let lastEventId = 0
    const streamContext: AgentStreamContext = {
      ...context,
      nextEventId: () => ++lastEventId,
      lastEventId: () => lastEventId,
      isClosing: () => this.abandoned || context.isClosing(),
      // Every sample the state machine accepts (also while it lingers) reaches the cluster, serialised once.
      onSampleAccepted: (stream, entry) => {
        if (!this.abandoned) outlet.sample(entry.json, stream.intervalSeconds!)
      }
    }
    // Counts of this stand-in audience would read as "1 SSE client": only its warnings and errors are logged.
    this.stream = new AgentStream(agentId, streamContext, this.history, new Audience(agentId, quiet(context.logger)))
  }

  /** Moves the state machine toward the cluster's demand. */
  follow (demand: ClusterDemand): void {
    if (this.abandoned || this.finished) return
    const wanted = demand.clientInterval === null ? demand.hold : demand.hold === null ? demand.clientInterval : Math.min(demand.clientInterval, demand.hold)
    const current = this.clusterSubscriber
    if (wanted === (current?.intervalSeconds ?? null)) return
    // The new stand-in joins before the old one leaves, so the demand never touches zero on the way.
    this.clusterSubscriber = wanted === null ? null : new ClusterSubscriber(wanted, this.history.lastEventId, this.outlet)
    if (this.clusterSubscriber) this.stream.subscribe(this.clusterSubscriber)
    if (current) {
      current.detached = true
      this.stream.unsubscribe(current)
    }
  }

  private finish (): void {
    this.finished = true
    this.clusterSubscriber = null
  }

  /** What the owner publishes about the stream. */
  info (owner: string): StreamInfo {
    const { state, taskId, intervalSeconds, startedAt } = this.stream.status()
    return { o: owner, s: state, t: taskId, v: intervalSeconds, a: startedAt }
  }

  /**
   * Gives the stream up without a word to the cluster (its clients stay with whoever owns
   * the agent next) and stops the agent's task. Resolves once the state machine is idle.
   */
  abandon (): Promise<void> {
    this.abandoned = true
    if (this.clusterSubscriber) this.clusterSubscriber.detached = true
    this.clusterSubscriber = null
    return this.stream.shutdown()
  }
}

function quiet (logger: LifecycleLogger): LifecycleLogger {
  return { info () {}, warn: (obj, msg) => logger.warn(obj, msg), error: (obj, msg) => logger.error(obj, msg) }
}

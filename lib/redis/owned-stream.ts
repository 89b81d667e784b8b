import { AgentStream, type AgentStreamContext } from '../lifecycle/agent-stream.js'
import { ReplayHistory } from '../lifecycle/replay-history.js'
import type { CoordinatedSubscriber, LifecycleLogger } from '../lifecycle/types.js'
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

/** An agent stream this instance runs because it holds the agent's lease. */
export class OwnedStream {
  readonly stream: AgentStream
  /** The lease is lost or the instance closes: the stream is being stopped and tells the cluster nothing more. */
  abandoned = false
  /** When the call that last set the lease (took or renewed it) was sent: the lease runs leaseMs past it at least. */
  leaseSetAt: number
  /**
   * The stream ended for the cluster (cancelled, failed, ended by the agent): it only stops now.
   * A late read of the cluster's demand must not restart it; whoever still wants the agent takes it anew.
   */
  private finished = false
  // Only the newest sample is kept here: the cluster's clients resume from their own instance's history.
  private readonly history = new ReplayHistory(1)
  /** The cluster's demand as the state machine sees it, or null with none. */
  private demand: CoordinatedSubscriber | null = null

  constructor (readonly agentId: string, context: AgentStreamContext, outlet: OwnerOutlet, leaseSetAt: number) {
    this.leaseSetAt = leaseSetAt
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
      },
      onEnded: (_stream, reason) => {
        if (this.abandoned) return
        this.finish()
        outlet.end(reason)
      },
      onFailed: (_stream, err) => {
        if (this.abandoned) return
        this.finish()
        outlet.fail(err)
      },
      // Counts of the one subscriber that stands for the cluster would read as "1 SSE client": only warnings and errors.
      audienceLogger: quiet(context.logger)
    }
    this.stream = new AgentStream(agentId, streamContext, this.history)
  }

  /** Moves the state machine toward the cluster's demand. */
  follow (demand: ClusterDemand): void {
    if (this.abandoned || this.finished) return
    const wanted = demand.clientInterval === null ? demand.hold : demand.hold === null ? demand.clientInterval : Math.min(demand.clientInterval, demand.hold)
    const current = this.demand
    if (wanted === (current?.intervalSeconds ?? null)) return
    // The new demand joins before the old one leaves, so the demand never touches zero on the way.
    this.demand = wanted === null ? null : clusterDemandAt(wanted, this.history.lastEventId)
    if (this.demand) this.stream.subscribe(this.demand)
    if (current) this.stream.unsubscribe(current)
  }

  private finish (): void {
    this.finished = true
    this.demand = null
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
    this.demand = null
    return this.stream.shutdown()
  }
}

/**
 * The cluster's demand, as one subscriber of the owner's state machine at the cluster's smallest interval, so that
 * the single-process state machine runs unchanged on the owner. It takes nothing in: samples, ends and failures
 * reach the cluster through the stream's hooks, and the cluster's clients catch up on their own instances.
 */
function clusterDemandAt (intervalSeconds: number, lastEventId: number): CoordinatedSubscriber {
  return { intervalSeconds, lastEventId, tune () {}, offer () {}, send () {}, countAsFirst () {}, gap () {}, end () {}, fail () {} }
}

function quiet (logger: LifecycleLogger): LifecycleLogger {
  return { info () {}, warn: (obj, msg) => logger.warn(obj, msg), error: (obj, msg) => logger.error(obj, msg) }
}

import type { AgentAdapter, MetricsSample, MetricsSink } from '../adapter.js'
import { channels, type StreamStopReason } from '../diagnostics.js'
import { FST_ERR_AGENT_SSE_CLOSED } from '../errors.js'
import { adapterCall, adapterFailure, boundAdapterCall, describeError, failureLogFields, invokeAdapter, traceAdapterCall } from './adapter-call.js'
import { markReported } from './reported-errors.js'
import { serialiseSample } from './sample.js'
import { Audience } from './audience.js'
import { holdEndedError } from './hold-ended.js'
import { catchUp, type HistoryEntry, type ReplayHistory } from './replay-history.js'
import { streamStatus } from './stream-status.js'
import { WaitList } from './wait-list.js'
import type { CoordinatedSubscriber, LifecycleLogger, LifecycleTimers, StreamState, StreamStatus } from './types.js'

const MAX_REASON_LENGTH = 256

/** What every AgentStream shares with the StreamLifecycle that owns it. */
export interface AgentStreamContext {
  readonly adapter: AgentAdapter
  readonly stopDelayMs: number
  readonly adapterTimeoutMs: number
  readonly logger: LifecycleLogger
  readonly timers: LifecycleTimers
  now (): number
  /** The id of the next accepted sample: one sequence for every agent, so ids never repeat, even for a forgotten agent. */
  nextEventId (): number
  /** The newest id handed out (a client's Last-Event-ID above it is not one of ours). */
  lastEventId (): number
  isClosing (): boolean
  /** The stream is idle with no demand and nobody waiting: its owner may forget it. */
  onIdle (stream: AgentStream): void
  // The hooks below are how a cluster owner runs this state machine for the whole cluster: the cluster's demand
  // is one subscriber, and what the stream does reaches the other instances through them.
  /** Called after every state change and in-place re-tune (a cluster owner publishes the stream's description). */
  onStateChanged? (stream: AgentStream): void
  /** Called for every sample the stream accepted, after its subscribers were offered it (a cluster owner publishes it). */
  onSampleAccepted? (stream: AgentStream, entry: HistoryEntry): void
  /**
   * The stream ended (cancelled, ended by the agent, shut down) while someone wanted it: called after its
   * subscribers were told `reason`. Not called when nobody wanted it (nobody to tell).
   */
  onEnded? (stream: AgentStream, reason: string): void
  /** The stream could not start, or failed, while someone wanted it: called after its subscribers were told. */
  onFailed? (stream: AgentStream, err: Error): void
  /**
   * Where the lines of the stream's audience go (its subscriber counts, a subscriber that threw); `logger` by
   * default. A cluster owner's one subscriber stands for the cluster's demand, not for an SSE client.
   */
  readonly audienceLogger?: LifecycleLogger
}

/** One `startMetricsStreaming` call and the task it produced. */
interface Run {
  /** Changes only through the adapter's `changeInterval`; otherwise a new interval means a new run. */
  intervalSeconds: number
  readonly abort: AbortController
  taskId: string | null
  startedAt: number | null
  /** Samples are no longer accepted (stopping, ended or failed). */
  closed: boolean
  /** The agent ended or failed while the start was still in flight; applied when it settles. */
  outcome: 'ended' | 'failed' | null
  /** The reason the agent gave when it ended the task while the start was in flight. */
  endReason: string | null
  /** Samples refused as not JSON objects (logged on the first and every 1000th, not per sample). */
  rejectedSamples: number
}

/**
 * The per-agent state machine: idle → starting → active ⇄ lingering → stopping → idle.
 *
 * Demand is the number of subscribers plus one for a manual hold. Every event
 * (subscribe, unsubscribe, hold, release, an adapter call settling, the linger
 * timer) ends in `reconcile()`, which moves the machine toward what the demand
 * asks for. `starting` and `stopping` never act on demand changes: they re-check
 * when their adapter call settles, so there is never more than one call in flight
 * and never two tasks for one agent (the RxJS `share` / Centrifuge dissolve model).
 *
 * The stream runs at the smallest interval requested. When that minimum changes
 * while active, the stream is re-tuned: in place through the adapter's optional
 * `changeInterval`, else by a stop and a start (still one task at a time).
 */
export class AgentStream {
  state: StreamState = 'idle'
  private readonly audience: Audience
  private run: Run | null = null
  private lingerTimer: unknown = null
  private stopping: Promise<void> | null = null
  private retuning = false
  /** The demand is dropping because the manual hold was released (for the log line, not the logic). */
  private releasingHold = false
  /** Why the next start happens, when it is not a first subscriber or a manual start. */
  private restartReason: string | null = null
  /** `hold()` callers waiting for the stream to be active. */
  private readonly untilActive = new WaitList()
  /** `shutdown()` callers waiting for the stream to be idle. */
  private readonly untilIdle = new WaitList()

  constructor (readonly agentId: string, private readonly ctx: AgentStreamContext, private readonly history: ReplayHistory) {
    this.audience = new Audience(agentId, ctx.audienceLogger ?? ctx.logger)
  }

  get demand (): number {
    return this.audience.demand
  }

  get taskId (): string | null {
    return this.run?.taskId ?? null
  }

  /** The interval the current run streams at, or null with no run. */
  get intervalSeconds (): number | null {
    return this.run?.intervalSeconds ?? null
  }

  /** A manual hold keeps the stream open. */
  get held (): boolean {
    return this.audience.holdIntervalSeconds !== null
  }

  /** True once nothing references this stream: no demand, no task, nobody waiting. */
  get disposable (): boolean {
    return this.state === 'idle' && this.demand === 0 && this.untilActive.size === 0
  }

  subscribe (subscriber: CoordinatedSubscriber): void {
    // Catch up before joining, so that nothing live can overtake the replay.
    const sentLatest = this.catchUp(subscriber)
    if (this.run) subscriber.tune(this.run.intervalSeconds)
    if (sentLatest) subscriber.countAsFirst()
    this.audience.add(subscriber)
    this.reconcile()
  }

  unsubscribe (subscriber: CoordinatedSubscriber): void {
    if (this.audience.remove(subscriber)) this.reconcile()
  }

  /** Sets the manual hold and resolves once the stream is active (rejects if it cannot start). */
  hold (intervalSeconds: number): Promise<void> {
    this.audience.holdIntervalSeconds = intervalSeconds
    // May start the stream, or re-tune it by a restart: either way, answer once it is active again.
    // If that never happens (released, cancelled, ended first) the machine goes idle, which rejects the wait.
    this.reconcile()
    if (this.state === 'active') return Promise.resolve()
    return this.untilActive.wait()
  }

  release (): void {
    if (this.audience.holdIntervalSeconds === null) return
    this.audience.holdIntervalSeconds = null
    this.releasingHold = true
    try {
      this.reconcile()
    } finally {
      this.releasingHold = false
    }
  }

  /**
   * Force stop of the task `taskId`: releases the hold, ends every subscriber with `cancelled` and
   * stops the task. Returns null unless that task is live (active or lingering).
   */
  cancel (taskId: string): Promise<void> | null {
    if (this.taskId !== taskId || (this.state !== 'active' && this.state !== 'lingering')) return null
    this.ctx.logger.info({ agentId: this.agentId, taskId: this.taskId }, `Cancelling metrics streaming task ${this.taskId} for agent ${this.agentId}`)
    this.endAudience('cancelled')
    return this.stop('cancelled')
  }

  /** Ends subscribers with `server-shutdown` and resolves once the agent's task is stopped. */
  shutdown (): Promise<void> {
    this.endAudience('server-shutdown')
    this.untilActive.rejectAll(new FST_ERR_AGENT_SSE_CLOSED())
    if (this.state === 'active' || this.state === 'lingering') this.stop('server-shutdown')
    // A start in flight is told we no longer want it; if it still succeeds it is stopped
    // once it settles (onStarted checks isClosing). `stopping` is already on its way to idle.
    if (this.state === 'starting') this.run!.abort.abort()
    if (this.state === 'idle') return Promise.resolve()
    return this.untilIdle.wait()
  }

  status (): StreamStatus {
    const run = this.run
    const demand = { subscribers: this.audience.size, manualHold: this.held, requestedIntervals: this.audience.intervals() }
    const task = run && { taskId: run.taskId, intervalSeconds: run.intervalSeconds, startedAt: run.startedAt === null ? null : new Date(run.startedAt).toISOString() }
    return streamStatus(this.agentId, this.state, demand, task)
  }

  private catchUp (subscriber: CoordinatedSubscriber): boolean {
    const streaming = this.state === 'active' || this.state === 'lingering'
    return catchUp(subscriber, this.history, this.ctx.lastEventId(), streaming, this.ctx.now(), this.audience)
  }

  private reconcile (): void {
    switch (this.state) {
      case 'idle':
        if (this.demand > 0) {
          this.start()
        } else {
          // A hold released (or ended) before its stream became active is answered, not left hanging.
          if (this.untilActive.size > 0) this.untilActive.rejectAll(holdEndedError(this.agentId, null))
          this.untilIdle.resolveAll()
          if (this.disposable) this.ctx.onIdle(this)
        }
        break
      case 'active':
        if (this.demand === 0) this.linger()
        else this.retune()
        break
      case 'lingering':
        if (this.demand > 0) {
          this.clearLingerTimer()
          this.enter('active')
          this.ctx.logger.info({ agentId: this.agentId }, `Client returned to agent ${this.agentId} within the stop delay, keeping metrics streaming`)
          this.retune()
        }
        break
      // 'starting' and 'stopping' re-check demand when their adapter call settles.
    }
  }

  private start (): void {
    const intervalSeconds = this.audience.smallestInterval()
    const run: Run = { intervalSeconds, abort: new AbortController(), taskId: null, startedAt: null, closed: false, outcome: null, endReason: null, rejectedSamples: 0 }
    this.run = run
    this.enter('starting')
    this.audience.tune(intervalSeconds)
    const trigger = this.restartReason ?? (this.audience.size > 0 ? 'First SSE client connected to' : 'Manual start of')
    this.restartReason = null
    this.ctx.logger.info({ agentId: this.agentId, intervalSeconds }, `${trigger} agent ${this.agentId}, starting metrics streaming`)

    const sink = this.sinkFor(run)
    const { adapter, adapterTimeoutMs, timers } = this.ctx
    // The raw call is kept: a start that answers after its timeout leaves a task to stop.
    let raw!: Promise<string>
    traceAdapterCall('startMetricsStreaming', this.agentId, () => {
      raw = invokeAdapter(() => adapter.startMetricsStreaming(this.agentId, { intervalSeconds, signal: run.abort.signal }, sink))
        .then((result) => {
          // The task id is shown in status and addressed by the cancel route, which takes at most 256 characters.
          if (typeof result?.taskId !== 'string' || result.taskId === '' || result.taskId.length > 256) {
            throw new TypeError('startMetricsStreaming did not resolve to { taskId: string } (1-256 characters)')
          }
          return result.taskId
        })
      return boundAdapterCall(raw, 'startMetricsStreaming', this.agentId, adapterTimeoutMs, timers)
    }).then(
      (taskId) => this.onStarted(run, taskId),
      (err: Error) => {
        this.onStartFailed(run, err)
        // A start that answers after its timeout has produced a task nobody owns: stop it at once
        // (unless the agent already ended it on its own).
        raw.then((lateTaskId) => { if (run.outcome !== 'ended') this.stopLateTask(lateTaskId) }, () => {})
      }
    )
  }

  private onStarted (run: Run, taskId: string): void {
    run.taskId = taskId
    run.startedAt = this.ctx.now()
    this.ctx.logger.info({ agentId: this.agentId, taskId }, `Started metrics streaming for agent ${this.agentId} (task: ${taskId})`)
    if (channels.streamStarted.hasSubscribers) channels.streamStarted.publish({ agentId: this.agentId, taskId, intervalSeconds: run.intervalSeconds })
    if (run.outcome === 'ended') {
      // The agent already ended this task: there is nothing to stop, and the adapter's
      // listeners for it go with the signal.
      run.abort.abort()
      this.publishStopped(taskId, 'ended-by-agent', run.endReason)
      this.toIdle()
      return
    }
    this.enter('active')
    if (run.outcome === 'failed') {
      this.stop('stream-failed')
      return
    }
    if (this.ctx.isClosing()) {
      this.stop('server-shutdown')
      return
    }
    this.untilActive.resolveAll()
    if (this.demand === 0) this.linger()
    else this.retune()
  }

  private onStartFailed (run: Run, err: Error): void {
    run.closed = true
    run.abort.abort(err)
    this.ctx.logger.error({ agentId: this.agentId, ...failureLogFields(err) }, `Failed to start metrics streaming for agent ${this.agentId}`)
    // Callers may answer it over HTTP (a manual start's 502/504): logged here, not there again.
    markReported(err)
    if (channels.streamFailed.hasSubscribers) channels.streamFailed.publish({ agentId: this.agentId, phase: 'start', taskId: null, error: err })
    this.untilActive.rejectAll(err)
    this.failAudience(err)
    this.toIdle()
  }

  /**
   * Moves an active stream to the smallest requested interval. One re-tune at a
   * time; when it settles the demand is checked again, as after every adapter call.
   */
  private retune (): void {
    const run = this.run as Run
    const wanted = this.audience.smallestInterval()
    if (this.retuning || wanted === run.intervalSeconds) return
    const { adapter, adapterTimeoutMs, timers, logger } = this.ctx
    const taskId = run.taskId as string
    if (!adapter.changeInterval) {
      this.restart(run, wanted)
      return
    }
    this.retuning = true
    const change = adapter.changeInterval.bind(adapter)
    adapterCall('changeInterval', this.agentId, () => change(this.agentId, taskId, wanted), adapterTimeoutMs, timers).then(
      () => {
        if (run.closed) return
        run.intervalSeconds = wanted
        this.audience.tune(wanted)
        // The state is the same but the status shows the interval: a cluster owner describes the stream again.
        this.ctx.onStateChanged?.(this)
        logger.info({ agentId: this.agentId, taskId, intervalSeconds: wanted }, `Re-tuned metrics streaming for agent ${this.agentId} to ${wanted}s (task: ${taskId})`)
      },
      (err: Error) => {
        logger.warn({ agentId: this.agentId, taskId, ...failureLogFields(err) }, `changeInterval failed for agent ${this.agentId}, restarting the stream instead`)
        // Only an active stream is restarted; a lingering one is left to its linger timer.
        if (!run.closed && this.state === 'active') this.restart(run, wanted)
      }
    ).finally(() => {
      this.retuning = false
      if (this.state === 'active') this.retune()
    })
  }

  private restart (run: Run, intervalSeconds: number): void {
    this.ctx.logger.info({ agentId: this.agentId, taskId: run.taskId, from: run.intervalSeconds, to: intervalSeconds }, `Re-tuning metrics streaming for agent ${this.agentId} from ${run.intervalSeconds}s to ${intervalSeconds}s by restarting it`)
    this.restartReason = 'Interval change for'
    this.stop('interval-change')
  }

  private stopLateTask (taskId: string): void {
    this.ctx.logger.warn({ agentId: this.agentId, taskId }, `Start of agent ${this.agentId} answered after its timeout, stopping task ${taskId}`)
    const { adapter, adapterTimeoutMs, timers } = this.ctx
    adapterCall('stopMetricsStreaming', this.agentId, () => adapter.stopMetricsStreaming(this.agentId, taskId), adapterTimeoutMs, timers)
      .catch((err: Error) => this.ctx.logger.error({ agentId: this.agentId, taskId, ...failureLogFields(err) }, `Failed to stop late task ${taskId} of agent ${this.agentId}`))
  }

  private linger (): void {
    this.enter('lingering')
    const why = this.releasingHold ? `Manual hold on agent ${this.agentId} released with no SSE clients` : `Last SSE client disconnected from agent ${this.agentId}`
    this.ctx.logger.info({ agentId: this.agentId, stopDelayMs: this.ctx.stopDelayMs }, `${why}, stopping metrics streaming`)
    this.lingerTimer = this.ctx.timers.setTimeout(() => {
      this.lingerTimer = null
      // Re-check on expiry: the demand may have come and gone again within the window.
      if (this.state === 'lingering' && this.demand === 0) this.stop('no-demand')
    }, this.ctx.stopDelayMs)
  }

  /** Stops the live task; `reason` is what the `stream:stopped` channel is told (the first stop's, if one is under way). */
  private stop (reason: StreamStopReason): Promise<void> {
    if (this.stopping) return this.stopping
    this.clearLingerTimer()
    const run = this.run as Run
    const taskId = run.taskId as string
    this.enter('stopping')
    run.closed = true
    run.abort.abort()
    const { adapter, adapterTimeoutMs, timers, logger } = this.ctx
    this.stopping = adapterCall('stopMetricsStreaming', this.agentId, () => adapter.stopMetricsStreaming(this.agentId, taskId), adapterTimeoutMs, timers)
      .then(
        () => {
          logger.info({ agentId: this.agentId, taskId }, `Stopped metrics streaming for agent ${this.agentId} (task: ${taskId})`)
          return null
        },
        // No retry: a failed stop is logged and the agent is treated as idle, so a broken agent cannot cause a stop storm.
        (err: Error) => {
          logger.error({ agentId: this.agentId, taskId, ...failureLogFields(err) }, `Failed to stop metrics streaming for agent ${this.agentId} (task: ${taskId}), marking it idle`)
          return err
        }
      )
      .then((error) => {
        this.stopping = null
        this.publishStopped(taskId, reason, null, error)
        this.toIdle()
      })
    return this.stopping
  }

  /** Told before the machine goes idle, so that a stream it starts again is told after this one's end. */
  private publishStopped (taskId: string, reason: StreamStopReason, endReason: string | null, error: Error | null = null): void {
    if (channels.streamStopped.hasSubscribers) channels.streamStopped.publish({ agentId: this.agentId, taskId, reason, endReason, error })
  }

  private toIdle (): void {
    this.clearLingerTimer()
    this.run = null
    this.enter('idle')
    this.reconcile()
  }

  // The sink is called from the adapter's own callbacks (a socket's 'message' or 'error' handler):
  // nothing it is given may throw back into them, or a bad value would crash the host's transport.
  private sinkFor (run: Run): MetricsSink {
    return {
      push: (sample) => this.guard(() => this.deliver(run, sample)),
      end: (reason) => this.guard(() => this.onAgentEnded(run, reason)),
      error: (err) => this.guard(() => this.onAgentFailed(run, err))
    }
  }

  private guard (call: () => void): void {
    try {
      call()
    } catch (err) {
      this.ctx.logger.error({ agentId: this.agentId, err }, `Handling a message of agent ${this.agentId}'s metrics stream failed: ${describeError(err)}`)
    }
  }

  private deliver (run: Run, sample: MetricsSample): void {
    if (run.closed) return
    const { json, problem } = serialiseSample(sample)
    if (json === null) {
      // Refused before it takes an event id: clients never see a hole or a `data: undefined`.
      if (run.rejectedSamples++ % 1000 === 0) {
        this.ctx.logger.warn({ agentId: this.agentId, taskId: run.taskId, rejectedSamples: run.rejectedSamples }, `Dropped a sample of agent ${this.agentId}: ${problem} (${run.rejectedSamples} dropped by this task so far)`)
      }
      return
    }
    const entry = this.history.append(this.ctx.nextEventId(), sample, json, this.ctx.now())!
    this.audience.offer(entry)
    this.ctx.onSampleAccepted?.(this, entry)
  }

  private onAgentEnded (run: Run, reason: unknown): void {
    if (run.closed) return
    run.closed = true
    // The reason reaches every client and the logs: a string, and a short one.
    const why = typeof reason === 'string' && reason !== '' ? reason.slice(0, MAX_REASON_LENGTH) : 'ended'
    this.ctx.logger.info({ agentId: this.agentId, taskId: run.taskId, reason: why }, `Agent ${this.agentId} ended metrics streaming on its own: ${why}`)
    this.endAudience(why)
    if (this.state === 'starting') {
      run.outcome = 'ended'
      run.endReason = why
      const ended = holdEndedError(this.agentId, why)
      // Logged just above (at info: the agent chose to end): a manual start answers it without logging it again.
      markReported(ended)
      this.untilActive.rejectAll(ended)
      return
    }
    // The plugin no longer wants the task: the adapter's listeners for it go with the signal.
    run.abort.abort()
    this.publishStopped(run.taskId as string, 'ended-by-agent', why)
    this.toIdle()
  }

  private onAgentFailed (run: Run, cause: unknown): void {
    if (run.closed) return
    const err = adapterFailure('stream', this.agentId, cause)
    this.ctx.logger.error({ agentId: this.agentId, taskId: run.taskId, ...failureLogFields(err) }, `Metrics stream of agent ${this.agentId} failed`)
    markReported(err)
    if (channels.streamFailed.hasSubscribers) channels.streamFailed.publish({ agentId: this.agentId, phase: 'stream', taskId: run.taskId, error: err })
    this.failAudience(err)
    if (this.state === 'starting') {
      run.closed = true
      run.outcome = 'failed'
      this.untilActive.rejectAll(err)
      return
    }
    // The transport failed but the agent may still be collecting: stop it (no leak).
    this.stop('stream-failed')
  }

  /** Ends the audience (the hold too) with `reason`; see the context's `onEnded`. */
  private endAudience (reason: string): void {
    const wanted = this.demand > 0
    this.audience.endAll((subscriber) => subscriber.end(reason))
    if (wanted) this.callHook(() => this.ctx.onEnded?.(this, reason))
  }

  /** Fails the audience (the hold too) with `err`; see the context's `onFailed`. */
  private failAudience (err: Error): void {
    const wanted = this.demand > 0
    this.audience.endAll((subscriber) => subscriber.fail(err))
    if (wanted) this.callHook(() => this.ctx.onFailed?.(this, err))
  }

  /** A hook's exception is logged, never thrown into the state machine (as a subscriber's is not). */
  private callHook (call: () => void): void {
    try {
      call()
    } catch (err) {
      this.ctx.logger.error({ agentId: this.agentId, err }, `A hook of agent ${this.agentId}'s stream threw: ${describeError(err)}`)
    }
  }

  private enter (state: StreamState): void {
    this.state = state
    this.ctx.onStateChanged?.(this)
  }

  private clearLingerTimer (): void {
    if (this.lingerTimer === null) return
    this.ctx.timers.clearTimeout(this.lingerTimer)
    this.lingerTimer = null
  }
}

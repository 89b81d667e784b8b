import { randomUUID } from 'node:crypto'
import { FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE } from '../errors.js'
import type { LifecycleTimers } from '../lifecycle/types.js'
import type { InboxMessage } from './messages.js'
import type { Ownership } from './ownership.js'
import type { RedisStore } from './store.js'
import { TimedWaits } from './timed-waits.js'

/** A cancel that lands on an instance that does not own the agent goes to the owner's inbox, and back. */
export class RemoteCancels {
  /** Cancels sent to an owner, by request id, waiting for its answer. */
  private readonly pending: TimedWaits<boolean>

  constructor (
    private readonly store: RedisStore,
    private readonly instanceId: string,
    timers: LifecycleTimers,
    /** How long to wait for the owner's answer (its adapter's stop, and a lease for it to die meanwhile). */
    private readonly waitMs: number
  ) {
    this.pending = new TimedWaits<boolean>(timers)
  }

  /** Asks the owner to cancel the agent's task; true once it stopped it, false if that task is not live there. */
  ask (owner: string, agentId: string, taskId: string): Promise<boolean> {
    const requestId = randomUUID()
    const answered = this.pending.wait(requestId, this.waitMs, () =>
      new FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE(`instance ${owner} did not answer the cancel of task ${taskId} within ${this.waitMs} ms`))
    this.store.send(owner, { op: 'cancel', requestId, from: this.instanceId, agentId, taskId }).catch((err: Error) => {
      this.pending.reject(requestId, new FST_ERR_AGENT_SSE_COORDINATOR_UNAVAILABLE(err.message))
    })
    return answered
  }

  /** An owner's answer (an unknown request id is a late or foreign one: ignored). */
  answered (requestId: string, found: boolean): void {
    this.pending.resolve(requestId, found)
  }

  /** A cancel for this instance as the owner: only the named agent's live task (task ids are unique per agent). */
  answer (message: Extract<InboxMessage, { op: 'cancel' }>, ownership: Ownership): void {
    const stopped = ownership.live(message.agentId)?.stream.cancel(message.taskId) ?? null
    const reply = (found: boolean): void => {
      this.store.send(message.from, { op: 'cancelled', requestId: message.requestId, found }).catch(() => {})
    }
    if (stopped === null) reply(false)
    else stopped.then(() => reply(true))
  }

  rejectAll (err: Error): void {
    this.pending.rejectAll(err)
  }
}

import type { AgentStream } from './agent-stream.js'

/**
 * Agent streams by the id of their live or stopping task, so that a cancel finds its stream in O(1) (task ids are
 * only unique per agent). Told of every state change of the streams it indexes (the task changes with the state).
 */
export class TaskIndex {
  private readonly byTask = new Map<string, Set<AgentStream>>()
  private readonly indexed = new Map<AgentStream, string>()

  /** The stream's state changed: re-indexes it under its current task, if any. */
  update (stream: AgentStream): void {
    const indexed = this.indexed.get(stream)
    const current = stream.taskId
    if (indexed === current) return
    if (indexed !== undefined) {
      const streams = this.byTask.get(indexed)!
      streams.delete(stream)
      if (streams.size === 0) this.byTask.delete(indexed)
      this.indexed.delete(stream)
    }
    if (current !== null) {
      let streams = this.byTask.get(current)
      if (!streams) {
        streams = new Set()
        this.byTask.set(current, streams)
      }
      streams.add(stream)
      this.indexed.set(stream, current)
    }
  }

  /** The streams whose live or stopping task has this id. */
  streamsOf (taskId: string): AgentStream[] {
    const streams = this.byTask.get(taskId)
    return streams === undefined ? [] : [...streams]
  }
}

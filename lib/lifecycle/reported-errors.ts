// An adapter failure is logged once, where it happens (the lifecycle knows its agent and task),
// and may then reach several callers: SSE clients as an `event: error` frame, a manual start as
// its 502/504. Marking it lets the HTTP layer answer it without Fastify logging it a second time.
const reported = new WeakSet<object>()

/** The lifecycle has logged this error. */
export function markReported (err: unknown): void {
  if (typeof err === 'object' && err !== null) reported.add(err)
}

/** Whether the lifecycle has already logged this error. */
export function wasReported (err: unknown): boolean {
  return typeof err === 'object' && err !== null && reported.has(err)
}

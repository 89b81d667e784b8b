import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import type { Test } from 'tap'

export interface DelayProxy {
  port: number
  /** redis://127.0.0.1:<port>: a Redis URL through the proxy. */
  url: string
}

/** How long a chunk waits in the proxy, in ms; `toServer` says its direction. */
export type ChunkDelay = (chunk: Buffer, toServer: boolean) => number

/**
 * A TCP proxy on 127.0.0.1 that holds chunks before passing them on, in order: a fixed `delay` puts Redis
 * `2 × delay` of round trip away, as across availability zones, where a loopback Redis answers in microseconds
 * and hides code that waits for one reply after another; a function delays chosen commands only (a chunk never
 * overtakes the one before it). Closed in teardown.
 */
export async function startDelayProxy (t: Test, targetPort: number, delay: number | ChunkDelay): Promise<DelayProxy> {
  const delayOf: ChunkDelay = typeof delay === 'number' ? () => delay : delay
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1')
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
      // A closed peer is not this proxy's concern: the other side sees the close.
      socket.on('error', () => {})
    }
    relay(client, upstream, (chunk) => delayOf(chunk, true))
    relay(upstream, client, (chunk) => delayOf(chunk, false))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise((resolve) => server.close(resolve))
  })
  const { port } = server.address() as AddressInfo
  return { port, url: `redis://127.0.0.1:${port}` }
}

/** Passes `from`'s chunks (then its close) to `to`, each after its delay and never before the one ahead of it. */
function relay (from: Socket, to: Socket, delayOf: (chunk: Buffer) => number): void {
  const queue: Array<{ at: number, chunk: Buffer | null }> = []
  let timer: NodeJS.Timeout | null = null
  const pump = (): void => {
    timer = null
    while (queue.length > 0 && queue[0]!.at <= performance.now()) {
      const { chunk } = queue.shift()!
      if (chunk === null) to.destroy()
      else if (!to.destroyed) to.write(chunk)
    }
    if (queue.length > 0) timer = setTimeout(pump, Math.max(0, queue[0]!.at - performance.now()))
  }
  const enqueue = (chunk: Buffer | null, delayMs: number): void => {
    queue.push({ at: Math.max(queue.at(-1)?.at ?? 0, performance.now() + delayMs), chunk })
    if (timer === null) timer = setTimeout(pump, Math.max(0, queue[0]!.at - performance.now()))
  }
  from.on('data', (chunk: Buffer) => enqueue(chunk, delayOf(chunk)))
  from.on('close', () => enqueue(null, 0))
}

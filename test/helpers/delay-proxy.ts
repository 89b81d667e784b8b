import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import type { Test } from 'tap'

export interface DelayProxy {
  port: number
  /** redis://127.0.0.1:<port>: a Redis URL through the proxy. */
  url: string
}

/**
 * A TCP proxy on 127.0.0.1 that holds every chunk `delayMs` before passing it on, in order, both ways: a
 * Redis `2 × delayMs` of round trip away, as across availability zones, where a loopback Redis answers in
 * microseconds and hides code that waits for one reply after another. Closed in teardown.
 */
export async function startDelayProxy (t: Test, targetPort: number, delayMs: number): Promise<DelayProxy> {
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1')
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
      // A closed peer is not this proxy's concern: the other side sees the close.
      socket.on('error', () => {})
    }
    relay(client, upstream, delayMs)
    relay(upstream, client, delayMs)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise((resolve) => server.close(resolve))
  })
  const { port } = server.address() as AddressInfo
  return { port, url: `redis://127.0.0.1:${port}` }
}

// Timers of one duration fire in the order they were set, so the chunks keep their order.
function relay (from: Socket, to: Socket, delayMs: number): void {
  from.on('data', (chunk) => setTimeout(() => { if (!to.destroyed) to.write(chunk) }, delayMs))
  from.on('close', () => setTimeout(() => to.destroy(), delayMs))
}

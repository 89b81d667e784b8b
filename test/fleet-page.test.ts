import { mkdirSync } from 'node:fs'
import type { Page } from 'playwright-core'
import t from 'tap'
import { chromiumAvailable, launchChromium } from './fixtures/chromium.js'
import { startExampleServer } from './helpers/example-process.js'
import { getJson, openSse, waitFor } from './helpers/server.js'

// The example's landing page: every agent of the example server as a tile, over one fleet
// stream, in a real headless Chromium against the real example server process.

interface TileState {
  agentId: string
  points: number
  eventId: number
  state: string
  clients: string
  stale: boolean
}

// Run in the page (the tests' TypeScript has no DOM types): every tile as the page shows it.
const readTiles = `[...document.querySelectorAll('[data-testid=tile]')].map((tile) => ({
  agentId: tile.dataset.agentId,
  points: Number(tile.dataset.points),
  eventId: Number(tile.dataset.eventId),
  state: tile.querySelector('[data-testid=tile-state]').textContent,
  clients: tile.querySelector('[data-testid=tile-clients]').textContent,
  stale: tile.dataset.stale === 'true'
}))`
const tiles = (page: Page) => page.evaluate(readTiles) as Promise<TileState[]>
const scrollWidth = (page: Page) => page.evaluate('document.documentElement.scrollWidth') as Promise<number>

/** A page with its errors, its requests (after load) and its event streams recorded. */
async function openPage (browser: Awaited<ReturnType<typeof launchChromium>>, url: string, options: Parameters<typeof browser.newPage>[0] = {}) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, ...options })
  const errors: string[] = []
  const requests: string[] = []
  const eventStreams: string[] = []
  page.on('pageerror', (err) => errors.push(err.message))
  page.on('request', (request) => requests.push(`${request.resourceType()} ${request.url()}`))
  page.on('response', (response) => {
    if ((response.headers()['content-type'] ?? '').startsWith('text/event-stream')) eventStreams.push(response.url())
  })
  await page.goto(url)
  return { page, errors, requests, eventStreams }
}

if (chromiumAvailable(t)) {
  t.test('the fleet page streams every agent over one EventSource, pushes status changes, stays responsive, and closing it stops every agent', async (t) => {
    const { origin: base, output } = await startExampleServer(t, { STOP_DELAY_MS: '1000' })
    const { agents } = (await getJson(`${base}/example/agents`)).body as { agents: string[] }
    t.ok(agents.length >= 25, `the example has "local" and at least 24 simulated agents (${agents.length})`)

    const browser = await launchChromium(t)
    const { page, errors, requests, eventStreams } = await openPage(browser, `${base}/`)
    // The page builds its tiles after its own fetch of the agent list, which may finish after "load".
    await waitFor(async () => (await tiles(page)).length >= agents.length, 'the page to build its tiles', 20_000)
    t.same((await tiles(page)).map((tile) => tile.agentId), agents, 'a tile per agent, in the server\'s order')

    // The simulated "flapping" agents send nothing for 15 s of every 40: all but those may wait for them.
    const withData = async (minPoints: number) => (await tiles(page)).filter((tile) => tile.points >= minPoints).length
    await waitFor(async () => (await withData(2)) >= 24, 'at least 24 tiles with samples', 60_000)

    t.equal(eventStreams.length, 1, `one text/event-stream response for the whole page (${eventStreams.join(', ')})`)
    t.equal(requests.filter((request) => request.startsWith('eventsource ')).length, 1, 'one EventSource request')
    const streamUrl = new URL(eventStreams[0]!)
    t.equal(streamUrl.pathname, '/api/metrics/stream', 'the fleet stream')
    t.same(streamUrl.searchParams.get('agents')?.split(','), agents, 'for every agent')

    const before = new Map((await tiles(page)).map((tile) => [tile.agentId, tile.eventId]))
    await waitFor(async () => (await tiles(page)).filter((tile) => tile.eventId > before.get(tile.agentId)!).length >= 20, 'the tiles to update', 20_000)

    // Every agent streams once, for this page; the tiles say so.
    await waitFor(async () => ((await getJson(`${base}/api/streams?limit=1000`)).body.streams as unknown[]).length === agents.length, 'every agent to stream', 20_000)
    const { streams } = (await getJson(`${base}/api/streams?limit=1000`)).body as { streams: Array<{ agent_id: string, sse_clients: number, state: string }> }
    t.same(streams.map((stream) => stream.sse_clients), agents.map(() => 1), 'one SSE client per agent: the page')
    await waitFor(async () => (await tiles(page)).every((tile) => tile.state === 'active' && tile.clients === '1'), 'every tile to show active with 1 client', 20_000)

    // A status change reaches the page on its stream: no request of its own.
    const requestsBefore = requests.length
    const other = await openSse(`${base}/api/agents/edge-2/metrics/stream?interval_seconds=1`)
    t.teardown(() => other.close())
    const edge2 = async () => (await tiles(page)).find((tile) => tile.agentId === 'edge-2')!
    await waitFor(async () => (await edge2()).clients === '2', 'the edge-2 tile to show a second client', 20_000)
    other.close()
    await waitFor(async () => (await edge2()).clients === '1', 'the edge-2 tile to show it gone', 20_000)
    t.same(requests.slice(requestsBefore), [], 'the page sent no request to learn it (no polling)')

    // The stream holds one of the browser's six connections to the server, not all of them.
    const answer = await Promise.race([
      page.evaluate(async () => {
        const response = await fetch('/api/streams?limit=1000')
        return { status: response.status, count: ((await response.json()) as { streams: unknown[] }).streams.length }
      }),
      new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('a fetch from the page got no answer in 15 s')), 15_000))
    ])
    t.same(answer, { status: 200, count: agents.length }, 'a fetch from the page answers while it streams')

    await waitFor(async () => (await withData(5)) >= 24, 'a few seconds of samples on the tiles, for the screenshots', 30_000)
    mkdirSync('test-artifacts', { recursive: true })
    await page.screenshot({ path: 'test-artifacts/fleet.png', fullPage: true })
    await page.emulateMedia({ colorScheme: 'dark' })
    await page.screenshot({ path: 'test-artifacts/fleet-dark.png', fullPage: true })
    await page.emulateMedia({ colorScheme: 'light' })
    await page.setViewportSize({ width: 390, height: 844 })
    await waitFor(async () => (await scrollWidth(page)) <= 390, 'the page to fit 390 px', 5000).catch(() => {})
    t.ok(await scrollWidth(page) <= 390, `nothing wider than a 390 px screen (scrollWidth ${await scrollWidth(page)})`)
    await page.screenshot({ path: 'test-artifacts/fleet-390.png', fullPage: true })
    t.equal(eventStreams.length, 1, 'still one event stream after all that')
    t.same(errors, [], 'no errors in the page')

    await page.close()
    await waitFor(async () => ((await getJson(`${base}/api/streams?limit=1000`)).body.streams as unknown[]).length === 0, 'every agent to stop after the grace window', 30_000)
    for (const agentId of agents) {
      await waitFor(() => output().includes(`agent ${agentId}: collecting stopped`), `agent ${agentId} to stop collecting`, 10_000)
      t.equal((output().match(new RegExp(`agent ${agentId}: collecting started`, 'g')) ?? []).length, 1, `agent ${agentId} started once`)
    }
  })

  t.test('a tile opens the single-agent view, which keeps a fixed time window and fits a phone in both colour schemes', async (t) => {
    const { origin: base } = await startExampleServer(t, { STOP_DELAY_MS: '1000' })
    const browser = await launchChromium(t)
    const { page, errors } = await openPage(browser, `${base}/`)
    const tile = page.locator('[data-testid=tile][data-agent-id=edge-4]')
    await waitFor(async () => Number(await tile.getAttribute('data-points')) >= 1, 'the edge-4 tile to show a sample', 30_000)
    await tile.click()
    await page.waitForURL(`${base}/agent.html?agent=edge-4`)
    t.equal(await page.inputValue('[data-testid=agent-select]'), 'edge-4', 'the view watches the clicked agent')
    await waitFor(async () => Number(await page.textContent('[data-testid=last-event-id]') || 0) > 0, 'a sample in the single-agent view', 20_000)
    // One sample once made the x axis span years: the window is two minutes, whatever the data.
    const windowSeconds = () => page.getAttribute('#chart-usage', 'data-window-seconds')
    await waitFor(async () => (await windowSeconds()) !== null, 'the chart to set its x scale', 10_000)
    t.equal(await windowSeconds(), '120', 'a fixed two-minute window from the first sample')
    await waitFor(async () => (await page.textContent('[data-testid=streaming-active]')) === 'true', 'the view to show streaming_active', 20_000)
    t.equal(await page.textContent('[data-testid=connection]'), 'live')
    t.match(await page.textContent('[data-testid=latest-sample]'), /load_shape\s*sawtooth/, 'the latest sample, as text')

    // Old links to the single-agent view still land there.
    const old = await openPage(browser, `${base}/?agent=edge-3`)
    await old.page.waitForURL(`${base}/agent.html?agent=edge-3`)
    await old.page.close()

    const firstEventId = Number(await page.textContent('[data-testid=last-event-id]'))
    await waitFor(async () => Number(await page.textContent('[data-testid=last-event-id]')) >= firstEventId + 3, 'a few more samples', 20_000)
    t.equal(await windowSeconds(), '120', 'still two minutes with more samples')
    mkdirSync('test-artifacts', { recursive: true })
    await page.emulateMedia({ colorScheme: 'dark' })
    await page.screenshot({ path: 'test-artifacts/agent-dark.png', fullPage: true })
    await page.emulateMedia({ colorScheme: 'light' })
    await page.setViewportSize({ width: 390, height: 844 })
    await waitFor(async () => (await scrollWidth(page)) <= 390, 'the view to fit 390 px', 5000).catch(() => {})
    t.ok(await scrollWidth(page) <= 390, `nothing wider than a 390 px screen (scrollWidth ${await scrollWidth(page)})`)
    await page.screenshot({ path: 'test-artifacts/agent-390.png', fullPage: true })
    t.same(errors, [], 'no errors in the page')
  })

  t.test('an agent whose task is cancelled ends on both pages, and the fleet page watches it again', async (t) => {
    const { origin: base } = await startExampleServer(t, { STOP_DELAY_MS: '1000' })
    const browser = await launchChromium(t)
    const fleet = await openPage(browser, `${base}/`)
    const agentView = await openPage(browser, `${base}/agent.html?agent=edge-2`)
    const edge2 = async () => (await tiles(fleet.page)).find((tile) => tile.agentId === 'edge-2')!
    await waitFor(async () => (await edge2()).clients === '2', 'the edge-2 tile to show both pages', 30_000)
    await waitFor(async () => (await agentView.page.textContent('[data-testid=state]')) === 'active', 'the agent view to show active', 20_000)
    const { task_id: cancelledTask } = (await getJson(`${base}/api/agents/edge-2/status`)).body as { task_id: string }

    await agentView.page.click('#cancel')
    await waitFor(async () => /stream ended: cancelled/.test(await agentView.page.textContent('[data-testid=event-log]') ?? ''), 'the agent view to log the end', 20_000)
    t.ok(await agentView.page.isVisible('#watch'), 'the agent view offers to watch again')
    await waitFor(async () => (await edge2()).state === 'ended', 'the edge-2 tile to show the end', 20_000)

    // The fleet page reopens its stream for every agent; edge-2 streams again, on a new task.
    await waitFor(async () => (await edge2()).state === 'active' && !(await edge2()).stale, 'the edge-2 tile to be live again', 30_000)
    const { task_id: newTask } = (await getJson(`${base}/api/agents/edge-2/status`)).body as { task_id: string }
    t.not(newTask, cancelledTask, 'a new task')
    await waitFor(async () => (await fleet.page.textContent('[data-testid=connection]')) === 'live', 'the fleet page to say it is live, with no reopen pending', 20_000)
    t.equal(fleet.eventStreams.length, 2, 'the fleet page reopened its one stream once')
    t.ok((await tiles(fleet.page)).filter((tile) => !tile.stale).length >= 20, 'the other agents go on')
    t.same([...fleet.errors, ...agentView.errors], [], 'no errors in the pages')
  })

  t.test('when the server goes away, the fleet page marks every tile stale and the agent view shows its status as unknown', async (t) => {
    const { origin: base, child } = await startExampleServer(t, { STOP_DELAY_MS: '1000' })
    const browser = await launchChromium(t)
    const fleet = await openPage(browser, `${base}/`)
    const agentView = await openPage(browser, `${base}/agent.html?agent=edge-2`)
    await waitFor(async () => (await tiles(fleet.page)).filter((tile) => !tile.stale).length >= 20, 'live tiles', 30_000)
    await waitFor(async () => (await agentView.page.textContent('[data-testid=state]')) === 'active', 'the agent view to show active', 20_000)

    child.kill('SIGTERM')
    await waitFor(() => child.exitCode !== null, 'the server to exit', 20_000)
    await waitFor(async () => (await tiles(fleet.page)).every((tile) => tile.stale), 'every tile to turn stale', 20_000)
    t.ok((await tiles(fleet.page)).every((tile) => tile.state !== 'active' && tile.clients === '–'), 'no tile claims an active stream or a client count')
    t.not(await fleet.page.getAttribute('[data-testid=connection]', 'data-state'), 'open', 'the page says it is not connected')
    await waitFor(async () => (await agentView.page.textContent('[data-testid=streaming-active]')) === 'unknown', 'the agent view to show streaming_active unknown', 20_000)
    t.match(await agentView.page.textContent('[data-testid=state]'), /unknown/)
    t.equal(await agentView.page.textContent('[data-testid=sse-clients]'), '–')

    mkdirSync('test-artifacts', { recursive: true })
    await fleet.page.screenshot({ path: 'test-artifacts/fleet-server-gone.png', fullPage: true })
    t.same([...fleet.errors, ...agentView.errors], [], 'no errors in the pages')
  })
}

import { mkdirSync } from 'node:fs'
import t from 'tap'
import { chromiumAvailable, launchChromium } from './fixtures/chromium.js'
import { startExampleServer } from './helpers/example-process.js'
import { getJson, waitFor } from './helpers/server.js'

// The single-agent view (/agent.html) in a real headless Chromium (Debian's package, installed by .ci/run).
if (chromiumAvailable(t)) {
  t.test('the single-agent view renders live metrics; a second tab shares the stream; closing both stops it after the debounce window', async (t) => {
    const { origin: base, output } = await startExampleServer(t, { STOP_DELAY_MS: '1000' })
    const status = async () => (await getJson(`${base}/api/agents/local/status`)).body

    const browser = await launchChromium(t)
    const pageErrors: string[] = []
    const openDashboard = async () => {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
      page.on('pageerror', (err) => pageErrors.push(err.message))
      await page.goto(`${base}/agent.html?agent=local`)
      return page
    }
    const lastEventId = async (page: Awaited<ReturnType<typeof openDashboard>>) => Number(await page.textContent('[data-testid=last-event-id]') || 0)

    const first = await openDashboard()
    await waitFor(async () => (await lastEventId(first)) >= 2, 'two samples rendered in the first tab', 20_000)
    const live = await status()
    t.match(live, { agent_id: 'local', streaming_active: true, state: 'active', sse_clients: 1 })
    await waitFor(async () => (await first.textContent('[data-testid=streaming-active]')) === 'true', 'the page to show streaming_active')
    t.match(await first.textContent('[data-testid=latest-sample]'), /cpu_percent/, 'the latest sample is shown')

    const second = await openDashboard()
    await waitFor(async () => (await lastEventId(second)) > 0, 'a sample in the second tab', 20_000)
    const shared = await status()
    t.equal(shared.sse_clients, 2, 'two clients')
    t.equal(shared.task_id, live.task_id, 'the same task, not restarted')
    t.equal((output().match(/agent local: collecting started/g) ?? []).length, 1, 'the agent started collecting once')
    await waitFor(async () => (await first.textContent('[data-testid=sse-clients]')) === '2', 'the page to show 2 clients')

    mkdirSync('test-artifacts', { recursive: true })
    await first.screenshot({ path: 'test-artifacts/dashboard.png', fullPage: true })

    await first.close()
    await second.close()
    await waitFor(async () => (await status()).sse_clients === 0, 'both clients to leave', 10_000)
    t.equal((await status()).streaming_active, true, 'still streaming inside the debounce window')
    await waitFor(async () => (await status()).streaming_active === false, 'streaming_active:false after the debounce window', 10_000)
    await waitFor(() => output().includes('agent local: collecting stopped'), 'the agent to stop collecting')
    t.same(pageErrors, [], 'no errors in the page')
  })
}

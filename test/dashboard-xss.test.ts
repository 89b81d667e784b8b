import { mkdirSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { chromiumAvailable, launchChromium } from './fixtures/chromium.js'
import { startServer, waitFor } from './helpers/server.js'

// The example dashboard shows what agents send and what the server lists. Markup in that data
// must appear as text: a sample key `<img src=x onerror=…>` once ran script in the page.
const hostileSample = '<img src=x onerror="window.__xss=1">'
const hostileAgent = '<img src=x onerror="window.__xssAgentList=1">'

// examples/dashboard.js is plain JavaScript without declarations (the examples run as written),
// so it is imported by URL and given its signature here rather than through `allowJs`.
type ServeDashboard = (app: FastifyInstance, info: { agents: string[], labels?: Record<string, string>, stop_delay_ms: number }) => Promise<void>
const dashboardModule = new URL('../examples/dashboard.js', import.meta.url).href

if (chromiumAvailable(t)) {
  t.test('the single-agent view shows markup in samples and agent ids as text, never as HTML', async (t) => {
    const { serveDashboard } = await import(dashboardModule) as { serveDashboard: ServeDashboard }
    // The dashboard served as examples/server.js serves it, with the real plugin under /api
    // and an agent list from the server that holds markup too.
    const { adapter, baseUrl } = await startServer(t, { prefix: '/api' }, (app) =>
      serveDashboard(app, { agents: ['xss-agent', hostileAgent], stop_delay_ms: 100 }))

    const browser = await launchChromium(t)
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    const pageErrors: string[] = []
    page.on('pageerror', (err) => pageErrors.push(err.message))
    await page.goto(`${baseUrl}/agent.html?agent=xss-agent`)

    await waitFor(() => adapter.startsFor('xss-agent') === 1, 'the dashboard to start the agent stream', 20_000)
    adapter.push('xss-agent', {
      timestamp: new Date().toISOString(),
      cpu_percent: 42,
      [hostileSample]: hostileSample,
      tags: ['safe', hostileSample]
    })
    await waitFor(async () => (await page.textContent('[data-testid=last-event-id]')) !== '', 'the sample to render', 20_000)
    // A markup <img src=x> fails to load and runs its onerror as a task. A probe image loading
    // the same URL afterwards fails after it: once the probe has failed, the payload had its chance.
    await page.evaluate('new Promise((resolve) => { const probe = new Image(); probe.onload = probe.onerror = resolve; probe.src = "x" })')

    t.equal(await page.evaluate(() => Reflect.get(globalThis, '__xss')), undefined, 'no script ran from the sample')
    t.equal(await page.evaluate(() => Reflect.get(globalThis, '__xssAgentList')), undefined, 'no script ran from the agent list')

    const cells = await page.locator('[data-testid=latest-sample] td').allTextContents()
    const rows = Object.fromEntries(Array.from({ length: cells.length / 2 }, (_, i) => [cells[2 * i], cells[2 * i + 1]]))
    t.match(rows, { [hostileSample]: hostileSample, tags: `safe, ${hostileSample}`, cpu_percent: '42' }, 'the latest sample shows the markup literally')
    t.equal(await page.locator('[data-testid=latest-sample] img').count(), 0, 'no <img> element in the latest-sample table')

    t.same(await page.locator('[data-testid=agent-select] option').allTextContents(), ['xss-agent', hostileAgent], 'the agent list shows the markup literally')
    t.equal(await page.locator('[data-testid=agent-select] img').count(), 0, 'no <img> element in the agent list')
    t.equal(await page.inputValue('[data-testid=agent-select]'), 'xss-agent', 'the watched agent is selected')

    mkdirSync('test-artifacts', { recursive: true })
    await page.screenshot({ path: 'test-artifacts/dashboard-xss.png', fullPage: true })
    t.same(pageErrors, [], 'no errors in the page')
  })

  t.test('the fleet page shows markup in agent ids and labels as text, never as HTML', async (t) => {
    const { serveDashboard } = await import(dashboardModule) as { serveDashboard: ServeDashboard }
    const labels = { 'xss-agent': hostileSample, [hostileAgent]: hostileSample }
    const { baseUrl } = await startServer(t, { prefix: '/api' }, (app) =>
      serveDashboard(app, { agents: ['xss-agent', hostileAgent], labels, stop_delay_ms: 100 }))

    const browser = await launchChromium(t)
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    const pageErrors: string[] = []
    page.on('pageerror', (err) => pageErrors.push(err.message))
    await page.goto(`${baseUrl}/`)

    // The server refuses a stream for an id it cannot hold (400): the page says so and shows the tiles anyway.
    await waitFor(async () => (await page.getAttribute('[data-testid=connection]', 'data-state')) === 'refused', 'the page to report the refused stream', 20_000)
    await page.evaluate('new Promise((resolve) => { const probe = new Image(); probe.onload = probe.onerror = resolve; probe.src = "x" })')
    t.equal(await page.evaluate(() => Reflect.get(globalThis, '__xss')), undefined, 'no script ran from a label')
    t.equal(await page.evaluate(() => Reflect.get(globalThis, '__xssAgentList')), undefined, 'no script ran from an agent id')

    const tiles = page.locator('[data-testid=tile]')
    t.same([await tiles.nth(0).getAttribute('data-agent-id'), await tiles.nth(1).getAttribute('data-agent-id')], ['xss-agent', hostileAgent])
    t.same(await page.locator('.tile-id').allTextContents(), ['xss-agent', hostileAgent], 'the ids, literally')
    t.same(await page.locator('.tile-label').allTextContents(), [hostileSample, hostileSample], 'the labels, literally')
    t.equal(await page.locator('[data-testid=tiles] img').count(), 0, 'no <img> element in the tiles')
    t.equal(await tiles.nth(1).getAttribute('href'), `/agent.html?agent=${encodeURIComponent(hostileAgent)}`, 'the link carries the id encoded')

    mkdirSync('test-artifacts', { recursive: true })
    await page.screenshot({ path: 'test-artifacts/fleet-xss.png', fullPage: true })
    t.same(pageErrors, [], 'no errors in the page')
  })
}

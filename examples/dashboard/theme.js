// Chart colours from the page's CSS variables (style.css), so the canvas follows light and dark
// mode like the rest of the page; uPlot's own axis colour is black, unreadable on a dark page.
export const chartColors = {}

function readColors () {
  const style = getComputedStyle(document.documentElement)
  for (const name of ['axis', 'grid', 'cpu', 'memory', 'load']) chartColors[name] = style.getPropertyValue(`--${name}`).trim()
}
readColors()

/** uPlot axis options whose colours are read at each draw, so a theme change needs only a redraw. */
export function themedAxis (options = {}) {
  return {
    stroke: () => chartColors.axis,
    grid: { stroke: () => chartColors.grid, width: 1 },
    ticks: { stroke: () => chartColors.grid, width: 1 },
    ...options
  }
}

/** Runs `redraw` after the colour scheme changed (the system's dark mode going on or off). */
export function onColorSchemeChange (redraw) {
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
    readColors()
    redraw()
  })
}

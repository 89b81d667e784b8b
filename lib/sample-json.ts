import type { MetricsSample } from './adapter.js'

// A sample that arrived already serialised (from a cluster owner) keeps its JSON text,
// so that the SSE frame reuses it instead of serialising the parsed object again.
const serialised = new WeakMap<MetricsSample, string>()

export function rememberJson (sample: MetricsSample, json: string): void {
  serialised.set(sample, json)
}

export function sampleJson (sample: MetricsSample): string {
  return serialised.get(sample) ?? JSON.stringify(sample)
}

/**
 * What an adapter hands over is untrusted: a sample is checked once, where it enters,
 * and turned into the JSON text every client of its agent is sent. Serialising here (not
 * per client, not later) also snapshots it: an adapter that reuses or mutates one object
 * for several agents or samples cannot change what was already accepted.
 */

/** The sample's JSON text, or why it is not a metrics sample. */
export type SerialisedSample = { json: string, problem: null } | { json: null, problem: string }

export function serialiseSample (sample: unknown): SerialisedSample {
  if (typeof sample !== 'object' || sample === null || Array.isArray(sample)) {
    return { json: null, problem: `not an object (${describeKind(sample)})` }
  }
  let json: unknown
  try {
    json = JSON.stringify(sample)
  } catch (err) {
    return { json: null, problem: `not JSON-serialisable (${err instanceof TypeError ? 'BigInt or circular' : 'its toJSON threw'})` }
  }
  // `toJSON` may turn an object into anything: only a JSON object is a sample.
  if (typeof json !== 'string' || json.charCodeAt(0) !== 0x7b /* { */) {
    return { json: null, problem: 'its JSON is not an object' }
  }
  return { json, problem: null }
}

function describeKind (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return typeof value
}

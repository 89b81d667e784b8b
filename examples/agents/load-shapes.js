// Shapes of load for the simulated agents: each is plain arithmetic on the time, so a fleet of
// them costs nothing and draws the same curve whenever it is watched. `phase` shifts an agent's
// curve so that two agents of one shape do not move in lockstep.

const TAU = 2 * Math.PI

/** A repeatable "random" number in [0, 1) for (seed, step): the same inputs always give the same value. */
export function noise (seed, step) {
  const x = Math.sin(seed * 12.9898 + step * 78.233) * 43758.5453
  return x - Math.floor(x)
}

const wave = (t, period, phase = 0) => (Math.sin((TAU * t) / period + phase) + 1) / 2
const frac = (x) => x - Math.floor(x)

/**
 * Each shape maps (t in seconds, phase in 0..1, seed) to the load it shows: `cpu` and `memory`
 * in %, and `online: false` while a flapping agent is unreachable (it sends nothing then).
 */
export const loadShapes = {
  // The original edge agents: CPU and memory drifting on slow waves.
  wave: (t, phase, seed) => ({ cpu: 15 + 60 * wave(t, 125, phase * TAU) + 10 * noise(seed, Math.floor(t)), memory: 40 + 30 * wave(t, 565, phase * TAU + 1) }),
  // A service at cruising speed: flat with a little jitter.
  steady: (t, phase, seed) => ({ cpu: 34 + 4 * noise(seed, Math.floor(t)), memory: 52 + 2 * phase }),
  // A machine nobody uses.
  idle: (t, _phase, seed) => ({ cpu: 0.5 + 2 * noise(seed, Math.floor(t)), memory: 18 }),
  // A queue filling up and draining at once, every 30 s.
  sawtooth: (t, phase) => ({ cpu: 10 + 80 * frac(t / 30 + phase), memory: 45 + 10 * frac(t / 30 + phase) }),
  // Quiet, with a two-second spike every 13 s.
  spiky: (t, phase, seed) => {
    const second = Math.floor(t + phase * 13)
    return { cpu: second % 13 < 2 ? 88 + 10 * noise(seed, second) : 6 + 6 * noise(seed, second), memory: 38 }
  },
  // Memory climbing until the process is restarted, every 5 minutes; the GC works harder as it fills.
  'memory-leak': (t, phase) => {
    const fill = frac(t / 300 + phase)
    return { cpu: 12 + 30 * fill * fill, memory: 30 + 65 * fill }
  },
  // A day of traffic compressed into 10 minutes.
  diurnal: (t, phase) => ({ cpu: 8 + 72 * wave(t, 600, phase * TAU), memory: 40 + 25 * wave(t, 600, phase * TAU - 0.6) }),
  // Reachable for 25 s, then gone for 15 s: no samples while it is away.
  flapping: (t, phase, seed) => ({ cpu: 30 + 30 * wave(t, 20, phase * TAU) + 5 * noise(seed, Math.floor(t)), memory: 55, online: frac(t / 40 + phase) < 25 / 40 }),
  // A batch job: 25 s of full work every minute, idle in between.
  batch: (t, phase, seed) => ({ cpu: frac(t / 60 + phase) < 25 / 60 ? 85 + 8 * noise(seed, Math.floor(t)) : 4, memory: frac(t / 60 + phase) < 25 / 60 ? 70 : 35 }),
  // Load stepping up and down every 20 s.
  step: (t, phase) => ({ cpu: [20, 40, 60, 80, 60, 40][Math.floor(t / 20 + phase * 6) % 6], memory: 48 }),
  // Busy and jittery.
  noisy: (t, _phase, seed) => ({ cpu: 20 + 60 * noise(seed, Math.floor(t)), memory: 60 + 10 * noise(seed + 1, Math.floor(t / 5)) }),
  // Pinned at the ceiling, swapping.
  saturated: (t, _phase, seed) => ({ cpu: 95 + 4.5 * noise(seed, Math.floor(t)), memory: 93 + 5 * noise(seed + 1, Math.floor(t / 3)) })
}

/** The shapes in the order the simulated fleet cycles through them. */
export const shapeNames = Object.keys(loadShapes)

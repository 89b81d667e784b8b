// The randomised cluster property of cluster.property.test.ts against a real 3-master Redis Cluster
// that it starts itself: a small time budget in `npm test`, the full 60 runs under STRESS=1
// (npm run test:stress). The suite reads the target when it runs, so the variable is set first.
process.env.AGENT_SSE_REDIS_TARGET = 'cluster'
await import('./cluster.property.test.js')

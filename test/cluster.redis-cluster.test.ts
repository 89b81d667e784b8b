// The in-process cluster scenarios of cluster.test.ts, against a real 3-master Redis Cluster that
// the suite starts itself (test/helpers/redis-cluster.ts). The suite reads the target when it runs,
// so the variable is set before it is imported.
process.env.AGENT_SSE_REDIS_TARGET = 'cluster'
await import('./cluster.test.js')

// One AgentAdapter over the example's agents: the built-in "local" agent and a fleet of simulated
// edge agents, each with its own shape of load.
import { createLocalAgent } from './local-agent.js'
import { createSimulatedAgents } from './simulated-agents.js'

/** edge-1 … edge-24: every shape of load twice, at different points of its cycle. */
export const defaultEdgeAgentIds = Array.from({ length: 24 }, (_, index) => `edge-${index + 1}`)

export function createExampleAgents ({ log, edgeAgentIds = defaultEdgeAgentIds }) {
  const local = createLocalAgent({ id: 'local', log })
  const edges = createSimulatedAgents({ agentIds: edgeAgentIds, log })
  const owner = (agentId) => (agentId === local.id ? local : edges)

  return {
    agentIds: [local.id, ...edgeAgentIds],
    /** A word per agent for the dashboard: what it is or what its load looks like. */
    labels: { [local.id]: 'this machine', ...edges.shapes },
    adapter: {
      agentExists: (agentId) => agentId === local.id || edges.agentExists(agentId),
      startMetricsStreaming: (agentId, options, sink) => owner(agentId).startMetricsStreaming(agentId, options, sink),
      stopMetricsStreaming: (agentId, taskId) => owner(agentId).stopMetricsStreaming(agentId, taskId),
      changeInterval: (agentId, taskId, intervalSeconds) => owner(agentId).changeInterval(agentId, taskId, intervalSeconds),
      getCurrentMetrics: (agentId) => owner(agentId).getCurrentMetrics(agentId)
    }
  }
}

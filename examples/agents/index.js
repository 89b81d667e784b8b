// One AgentAdapter over the example's agents: the built-in "local" agent and simulated edge agents.
import { createLocalAgent } from './local-agent.js'
import { createSimulatedAgents } from './simulated-agents.js'

export function createExampleAgents ({ log, edgeAgentIds = ['edge-1', 'edge-2', 'edge-3'] }) {
  const local = createLocalAgent({ id: 'local', log })
  const edges = createSimulatedAgents({ agentIds: edgeAgentIds, log })
  const owner = (agentId) => (agentId === local.id ? local : edges)

  return {
    agentIds: [local.id, ...edgeAgentIds],
    adapter: {
      agentExists: (agentId) => agentId === local.id || edges.agentExists(agentId),
      startMetricsStreaming: (agentId, options, sink) => owner(agentId).startMetricsStreaming(agentId, options, sink),
      stopMetricsStreaming: (agentId, taskId) => owner(agentId).stopMetricsStreaming(agentId, taskId),
      changeInterval: (agentId, taskId, intervalSeconds) => owner(agentId).changeInterval(agentId, taskId, intervalSeconds),
      getCurrentMetrics: (agentId) => owner(agentId).getCurrentMetrics(agentId)
    }
  }
}

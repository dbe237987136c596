package io.moecluster.expert;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The expert entities alive on this node, by entity id: where the {@link ExpertDataServer} finds
 * the {@link ExpertComputation} of a call. An entity registers when it starts and unregisters when
 * it stops (hand-off to another node, passivation, shutdown), so a call for an entity that is not
 * here is answered "not hosted" and the router goes through Cluster Sharding, which knows where
 * the entity lives now.
 */
final class EntityDirectory {
  private final Map<String, ExpertComputation> entities = new ConcurrentHashMap<>();

  void register(String entityId, ExpertComputation computation) {
    entities.put(entityId, computation);
  }

  /** Removes the entity only if it is still {@code computation} (a newer incarnation stays). */
  void unregister(String entityId, ExpertComputation computation) {
    entities.remove(entityId, computation);
  }

  /** The entity's computation, or null when it does not live on this node. */
  ExpertComputation get(String entityId) {
    return entities.get(entityId);
  }

  int size() {
    return entities.size();
  }
}

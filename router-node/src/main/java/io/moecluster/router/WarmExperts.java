package io.moecluster.router;

import io.moecluster.expert.ExpertEntity;
import io.moecluster.proto.cluster.v1.ExpertReply;
import io.moecluster.proto.cluster.v1.Located;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The expert entities whose nodes said, in their last reply, that the weights stay warm there
 * ({@code ExpertReply.stays_warm}: the node's weight cache holds every expert of the model and its
 * backend keeps no copy of its own). A prefetch hint to such an entity cannot help, and on a node
 * that gets no request in that layer it costs a wake-up; a layer whose entities all stay warm need
 * not be predicted at all. What a node said holds for the node that said it, while it is not lost:
 * an entity that moves, or whose node is lost (and may come back at the same address with an empty
 * cache), is hinted again until a reply says the same.
 *
 * <p>Both halves of that condition belong to the node and hold for its life, so one such reply
 * also speaks for the node's entities that never answer, such as standby replicas: an entity the
 * placement shows loaded there has finished its warm-up into a cache with room for every expert,
 * which never evicts. It stays warm unless its own last reply said otherwise.
 */
final class WarmExperts {
  private final int replicas;
  private final Map<String, String> staysWarmOn = new ConcurrentHashMap<>(); // entity id -> node address
  private final Map<String, String> coldOn = new ConcurrentHashMap<>(); // entity id -> node of its last "not warm"
  private final Set<String> holdingAll = ConcurrentHashMap.newKeySet(); // nodes that said stays_warm once
  private final AtomicLong version = new AtomicLong(); // moves whenever staysWarmOn changes
  private volatile Layers layers = new Layers(null, Map.of(), -1, new ConcurrentHashMap<>());

  /**
   * Per placement (its entities by layer, indexed once) and version of what the nodes said:
   * whether each layer asked about stays warm.
   */
  private record Layers(ExpertPlacement.Snapshot snapshot, Map<Integer, List<Located>> byLayer, long version,
      Map<Integer, Boolean> warm) {}

  WarmExperts(int replicas) {
    this.replicas = replicas;
  }

  /** A successful reply of entity {@code entityId}: remembers whether its node said it stays warm. */
  void noteReply(String entityId, ExpertReply reply) {
    String node = reply.getNode();
    boolean changed;
    if (reply.getStaysWarm() && !node.isEmpty()) {
      changed = !node.equals(staysWarmOn.put(entityId, node));
      changed |= coldOn.remove(entityId) != null;
      changed |= holdingAll.add(node);
    } else {
      changed = staysWarmOn.remove(entityId) != null;
      changed |= !node.isEmpty() && !node.equals(coldOn.put(entityId, node));
    }
    if (changed) {
      version.incrementAndGet();
    }
  }

  /**
   * {@code node} was lost (unreachable, or removed): what it said no longer holds. Its entities
   * start elsewhere, or it comes back, perhaps restarted at the same address with an empty cache;
   * either way they are hinted again until a reply says otherwise.
   */
  void forgetNode(String node) {
    boolean changed = staysWarmOn.values().removeIf(node::equals);
    changed |= coldOn.values().removeIf(node::equals);
    changed |= holdingAll.remove(node);
    if (changed) {
      version.incrementAndGet();
    }
  }

  /**
   * Whether {@code entityId}, located on {@code node} ({@code loaded}: the placement shows its
   * warm-up done), stays warm there: its node said so in its last reply, or, for an entity whose
   * last reply there said nothing against it, the node said so of another of its entities.
   */
  boolean staysWarm(String entityId, String node, boolean loaded) {
    if (node == null) {
      return false;
    }
    if (node.equals(staysWarmOn.get(entityId))) {
      return true;
    }
    return loaded && holdingAll.contains(node) && !node.equals(coldOn.get(entityId));
  }

  /**
   * Whether every entity of {@code layer} in a ready placement is loaded and stays warm on the node
   * the placement names. False without a ready placement: an entity not yet placed is one a hint
   * starts and loads.
   */
  boolean layerStaysWarm(int layer, ExpertPlacement.Snapshot snapshot) {
    if (snapshot == null || !snapshot.ready()) {
      return false;
    }
    long v = version.get();
    Layers l = layers;
    if (l.snapshot() != snapshot) {
      Map<Integer, List<Located>> byLayer = new HashMap<>();
      snapshot.placement().forEach(e -> byLayer.computeIfAbsent(e.getLayer(), k -> new ArrayList<>()).add(e));
      l = new Layers(snapshot, byLayer, v, new ConcurrentHashMap<>());
      layers = l;
    } else if (l.version() != v) {
      l = new Layers(snapshot, l.byLayer(), v, new ConcurrentHashMap<>());
      layers = l;
    }
    List<Located> entities = l.byLayer().getOrDefault(layer, List.of());
    return l.warm().computeIfAbsent(layer, k -> !entities.isEmpty() && entities.stream().allMatch(this::staysWarm));
  }

  private boolean staysWarm(Located e) {
    return e.getLoaded()
        && staysWarm(ExpertEntity.entityId(e.getLayer(), e.getExpert(), e.getReplica(), replicas), e.getNode(), true);
  }
}

package io.moecluster.router;

import io.moecluster.expert.ExpertEntity;
import io.moecluster.proto.cluster.v1.ExpertCommand;
import io.moecluster.proto.cluster.v1.Located;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;
import java.util.function.Supplier;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Which expert entities this router may send to straight, past their nodes' shard regions: the
 * refs and data channel endpoints of the entities that the router's placement view shows loaded,
 * less those found stopped ({@link #markDead}) and those paused after a failure
 * ({@link #pause}). Also remembers the node where each entity was last located.
 */
final class DirectPaths {
  private static final Logger log = LoggerFactory.getLogger(DirectPaths.class);

  /**
   * The direct paths of one placement: entity refs by entity id, the data channel endpoint of the
   * node each one lives on (absent when that node serves none, or is this node: in
   * {@code moe serve} a local message needs no socket nor serialization), and the set of those
   * refs.
   */
  record View(ExpertPlacement.Snapshot snapshot, Map<String, ActorRef<ExpertCommand>> refs,
      Map<String, String> endpoints, Set<ActorRef<?>> live) {}

  private final Supplier<ExpertPlacement.Snapshot> placement; // null: always through sharding
  private final ActorRefResolver resolver;
  private final int replicas;
  private final String self; // this node's address
  private final Consumer<ActorRef<?>> watch; // asks the watcher to say when the entity stops
  private final ExpertBreakers breakers;
  private final long coolDownNanos;
  // Entities that are gone for good: stopped (watched, or "not hosted" by their node) or on a
  // removed node. Sharding finds their new incarnations, which the placement names by new refs.
  private final Set<ActorRef<?>> dead = ConcurrentHashMap.newKeySet();
  // Entities that failed an attempt otherwise (a timeout, a lost or refused data channel) or whose
  // node became unreachable, when (System.nanoTime): they go through sharding for the breaker
  // cool-down and until their breaker is closed, or until their node is reachable again, then
  // straight again. Each may be a blip of a live entity (a node's GC pause of seconds), and through
  // sharding every request pays 1-2 ms a hop more: a mark for good cost that for the router's life.
  private final Map<ActorRef<?>, Long> pausedAt = new ConcurrentHashMap<>();
  // Where each entity was last located: the placement forgets a node's entities once it is down,
  // before its removal, when their breakers must be reset.
  private final Map<String, String> lastNode = new ConcurrentHashMap<>();
  private volatile View view = new View(null, Map.of(), Map.of(), Set.of());

  DirectPaths(Supplier<ExpertPlacement.Snapshot> placement, ActorRefResolver resolver, int replicas, String self,
      Consumer<ActorRef<?>> watch, ExpertBreakers breakers, long coolDownNanos) {
    this.placement = placement;
    this.resolver = resolver;
    this.replicas = replicas;
    this.self = self;
    this.watch = watch;
    this.breakers = breakers;
    this.coolDownNanos = coolDownNanos;
  }

  /**
   * The direct refs of the current placement (rebuilt when it changes; empty until it is ready);
   * records the node of every located entity.
   */
  View current() {
    if (placement == null) {
      return view;
    }
    ExpertPlacement.Snapshot snap = placement.get();
    View d = view;
    if (d.snapshot() != snap) {
      Map<String, ActorRef<ExpertCommand>> refs = new HashMap<>();
      Map<String, String> endpoints = new HashMap<>();
      if (snap != null) {
        for (Located l : snap.placement()) {
          lastNode.put(ExpertEntity.entityId(l.getLayer(), l.getExpert(), l.getReplica(), replicas), l.getNode());
        }
      }
      // Not only once the placement is ready: after a node loss it is not ready until the lost
      // entities are placed again, and the live ones should keep their direct path meanwhile
      // (through sharding each request waits on this router's view of shard homes, which the
      // loss of the shard coordinator's node leaves stale for a while).
      if (snap != null) {
        for (Located l : snap.placement()) {
          if (l.getEntity().isEmpty() || !l.getLoaded()) {
            continue;
          }
          try {
            ActorRef<ExpertCommand> ref = resolver.resolveActorRef(l.getEntity());
            String id = ExpertEntity.entityId(l.getLayer(), l.getExpert(), l.getReplica(), replicas);
            refs.put(id, ref);
            if (!l.getDataEndpoint().isEmpty() && !l.getNode().equals(self)) {
              endpoints.put(id, l.getDataEndpoint());
            }
            if (!d.live().contains(ref)) {
              watch.accept(ref);
            }
          } catch (RuntimeException e) {
            // unresolvable: that entity goes through sharding
          }
        }
      }
      if (refs.size() != d.refs().size()) {
        log.info("Expert requests: {} of {} entities addressed directly, the rest through sharding", refs.size(),
            snap == null ? 0 : snap.placement().size());
      }
      d = new View(snap, refs, endpoints, Set.copyOf(refs.values()));
      view = d;
    }
    forgetUnplaced(d);
    return d;
  }

  /** The node where the entity was last located; null when it never was. */
  String nodeOf(String entityId) {
    return lastNode.get(entityId);
  }

  /** The entities last located on the node. */
  List<String> entitiesOn(String node) {
    List<String> ids = new ArrayList<>();
    for (var e : lastNode.entrySet()) {
      if (e.getValue().equals(node)) {
        ids.add(e.getKey());
      }
    }
    return ids;
  }

  /** The entity has stopped (or its node was removed): its requests go through sharding for good. */
  void markDead(ActorRef<?> ref) {
    dead.add(ref);
  }

  /** The entity failed an attempt, or its node is unreachable: through sharding for a while. */
  void pause(ActorRef<?> ref) {
    pausedAt.put(ref, System.nanoTime());
  }

  /**
   * The node is reachable again: its entities paused because of it, or of the attempts that
   * failed meanwhile, are sent to straight again at once.
   *
   * @return how many were paused
   */
  int unpause(String node) {
    Map<String, ActorRef<ExpertCommand>> refs = current().refs();
    int cleared = 0;
    for (var e : lastNode.entrySet()) {
      ActorRef<ExpertCommand> ref = e.getValue().equals(node) ? refs.get(e.getKey()) : null;
      if (ref != null && pausedAt.remove(ref) != null) {
        cleared++;
      }
    }
    return cleared;
  }

  /** Whether a located entity may be sent to straight: it has not stopped and is not paused. */
  boolean reachable(ActorRef<?> target, int layer, int expert, int replica, long now) {
    return !dead.contains(target) && !paused(target, layer, expert, replica, now);
  }

  /**
   * Whether the entity failed an attempt, or its node was unreachable, within the breaker
   * cool-down, or since then its breaker has not closed again. An open breaker lets its probe
   * through just as the cool-down ends: that probe goes through sharding, which reaches the entity
   * wherever it is, and once it has closed the breaker the entity is sent to straight again.
   * (Sent straight, a probe meets what failed there again: where only the direct path fails, the
   * entity would be reached one chunk per cool-down.)
   */
  private boolean paused(ActorRef<?> target, int layer, int expert, int replica, long now) {
    Long since = pausedAt.get(target);
    if (since == null) {
      return false;
    }
    if (now - since < coolDownNanos || breakers.of(layer, expert, replica).state() != CircuitBreaker.State.CLOSED) {
      return true;
    }
    pausedAt.remove(target, since);
    return false;
  }

  /**
   * Forgets the refs found dead or paused that the placement no longer names: their entities live
   * on under new refs, and only a named ref is ever sent to. Else both would keep every lost node's
   * entities for the router's life. Cheap on every call: both are empty but after a failure. Should
   * a late answer of a removed node make the placement name a forgotten ref again, its watch (a
   * new one, as for any ref new to the placement) or its first failed attempt marks it again.
   */
  private void forgetUnplaced(View d) {
    if (!dead.isEmpty()) {
      dead.removeIf(ref -> !d.live().contains(ref));
    }
    if (!pausedAt.isEmpty()) {
      pausedAt.keySet().removeIf(ref -> !d.live().contains(ref));
    }
  }

  /**
   * Refs found dead or paused that the current placement no longer names, yet are remembered
   * (for tests). A paused ref the placement still names is kept: it goes straight again after
   * its cool-down.
   */
  int rememberedUnplacedRefs() {
    Set<ActorRef<?>> live = view.live();
    return (int) (dead.stream().filter(r -> !live.contains(r)).count()
        + pausedAt.keySet().stream().filter(r -> !live.contains(r)).count());
  }
}

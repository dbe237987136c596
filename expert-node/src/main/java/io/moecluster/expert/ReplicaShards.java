package io.moecluster.expert;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.pekko.actor.ActorRef;
import org.apache.pekko.actor.ActorSystem;
import org.apache.pekko.actor.Address;
import org.apache.pekko.cluster.Cluster;
import org.apache.pekko.cluster.Member;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.sharding.ShardCoordinator;
import scala.collection.immutable.IndexedSeq;
import scala.concurrent.Future;
import scala.jdk.javaapi.CollectionConverters;

/**
 * Shards and their placement for {@code moe.expert.replicas = 2}: every expert has two entities,
 * {@code "<l>/<e>#0"} and {@code "<l>/<e>#1"}, and they must live on different expert nodes so
 * that losing one node leaves every expert a live replica.
 *
 * <p>The two replicas of an expert have the same shard base {@code b} and land in the sibling
 * shards {@code "b#0"} and {@code "b#1"}. The allocation strategy never puts a shard on a region
 * that hosts its sibling while another region can take it (least shards first among the allowed
 * regions). With a single expert node both siblings share it (there is nowhere else); when one of
 * two expert nodes dies, its shards join their siblings on the survivor until a node joins and a
 * rebalance moves them apart again.
 */
public final class ReplicaShards {
  private ReplicaShards() {}

  /**
   * The shard of an entity id: {@code "<base>#<replica>"} with the base of {@link ExpertShards}
   * (the expert's column); siblings share the base.
   */
  static String shardId(String entityId, int numberOfShards) {
    int mark = entityId.indexOf('#');
    String replica = mark < 0 ? "0" : entityId.substring(mark + 1);
    return ExpertShards.base(entityId, numberOfShards) + "#" + replica;
  }

  /** The shard id of the other replica ({@code "b#0"} and {@code "b#1"}); null for other ids. */
  static String sibling(String shardId) {
    if (shardId.endsWith("#0")) {
      return shardId.substring(0, shardId.length() - 1) + "1";
    }
    if (shardId.endsWith("#1")) {
      return shardId.substring(0, shardId.length() - 1) + "0";
    }
    return null;
  }

  /**
   * Least-shard allocation with anti-affinity between sibling shards. Rebalancing is the
   * delegate's (least-shard), minus the moves that anti-affinity would send straight back.
   */
  static final class Allocation implements ShardCoordinator.ActorSystemDependentAllocationStrategy {
    // Filtering the delegate's (already computed) proposal is cheap: run it where it completes.
    private static final scala.concurrent.ExecutionContext SAME_THREAD =
        scala.concurrent.ExecutionContext.fromExecutor(Runnable::run);
    private final ShardCoordinator.ShardAllocationStrategy delegate;
    private volatile Cluster cluster; // null until started

    Allocation(ShardCoordinator.ShardAllocationStrategy delegate) {
      this.delegate = delegate;
    }

    @Override
    public void start(ActorSystem system) {
      cluster = Cluster.get(system);
      if (delegate instanceof ShardCoordinator.ActorSystemDependentAllocationStrategy d) {
        d.start(system);
      } else if (delegate instanceof ShardCoordinator.StartableAllocationStrategy d) {
        d.start();
      }
    }

    @Override
    public Future<ActorRef> allocateShard(ActorRef requester, String shardId,
        scala.collection.immutable.Map<ActorRef, IndexedSeq<String>> current) {
      ActorRef region = choose(shardId, toJava(current), null);
      return Future.successful(region == null ? requester : region);
    }

    @Override
    public Future<scala.collection.immutable.Set<String>> rebalance(
        scala.collection.immutable.Map<ActorRef, IndexedSeq<String>> current,
        scala.collection.immutable.Set<String> inProgress) {
      Map<ActorRef, List<String>> regions = toJava(current);
      return delegate.rebalance(current, inProgress).map(proposed -> {
        Set<String> keep = new HashSet<>();
        for (String shard : CollectionConverters.asJava(proposed)) {
          ActorRef home = homeOf(shard, regions);
          ActorRef next = choose(shard, regions, shard);
          if (home == null || (next != null && !next.equals(home))) {
            keep.add(shard);
          }
        }
        return scala.collection.immutable.Set.from(CollectionConverters.asScala(keep));
      }, SAME_THREAD);
    }

    /**
     * The region for {@code shardId}: among the usable regions (members Up, when known) that do
     * not host its sibling, the one with the fewest shards (not counting {@code moving}); ties
     * by address, so every coordinator decides alike. Null when there is no region.
     */
    ActorRef choose(String shardId, Map<ActorRef, List<String>> regions, String moving) {
      List<ActorRef> usable = new ArrayList<>();
      for (ActorRef r : regions.keySet()) {
        if (isUp(r)) {
          usable.add(r);
        }
      }
      if (usable.isEmpty()) {
        usable.addAll(regions.keySet());
      }
      String sibling = sibling(shardId);
      List<ActorRef> allowed = new ArrayList<>();
      for (ActorRef r : usable) {
        if (sibling == null || !regions.get(r).contains(sibling)) {
          allowed.add(r);
        }
      }
      List<ActorRef> candidates = allowed.isEmpty() ? usable : allowed;
      return candidates.stream()
          .min(Comparator.<ActorRef>comparingInt(r -> count(regions.get(r), moving))
              .thenComparing(r -> address(r).toString()))
          .orElse(null);
    }

    private static int count(List<String> shards, String moving) {
      return moving != null && shards.contains(moving) ? shards.size() - 1 : shards.size();
    }

    private static ActorRef homeOf(String shard, Map<ActorRef, List<String>> regions) {
      for (var e : regions.entrySet()) {
        if (e.getValue().contains(shard)) {
          return e.getKey();
        }
      }
      return null;
    }

    private boolean isUp(ActorRef region) {
      Cluster c = cluster;
      if (c == null) {
        return true;
      }
      Address a = address(region);
      for (Member m : c.state().getMembers()) {
        if (m.address().equals(a)) {
          return m.status() == MemberStatus.up();
        }
      }
      return false;
    }

    private Address address(ActorRef region) {
      Address a = region.path().address();
      Cluster c = cluster;
      return a.hasLocalScope() && c != null ? c.selfAddress() : a;
    }

    private static Map<ActorRef, List<String>> toJava(scala.collection.immutable.Map<ActorRef, IndexedSeq<String>> m) {
      Map<ActorRef, List<String>> out = new java.util.HashMap<>();
      CollectionConverters.asJava(m).forEach((k, v) -> out.put(k, CollectionConverters.asJava(v)));
      return out;
    }
  }
}

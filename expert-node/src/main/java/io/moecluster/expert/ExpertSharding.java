package io.moecluster.expert;

import com.typesafe.config.Config;
import io.moecluster.proto.cluster.v1.ExpertCommand;
import java.util.Collections;
import java.util.Set;
import java.util.WeakHashMap;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.cluster.sharding.ShardCoordinator;
import org.apache.pekko.cluster.sharding.typed.ClusterShardingSettings;
import org.apache.pekko.cluster.sharding.typed.ShardingEnvelope;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.sharding.typed.javadsl.Entity;
import org.apache.pekko.cluster.sharding.typed.javadsl.EntityContext;
import org.apache.pekko.cluster.typed.Cluster;

/**
 * The one definition of the "expert" entity type that every node shares: role {@value #ROLE},
 * the shard count and least-shard allocation of {@code moe.expert.sharding} over shards that are
 * columns of the model ({@link ExpertShards}), the replicas of
 * {@code moe.expert.replicas} (with 2, {@link ReplicaShards} keeps an expert's two entities on
 * different nodes), and no idle
 * passivation (an entity keeps its weights resident). Expert nodes init the real region through
 * {@link ExpertNode}; routers get a proxy from {@link #initProxy}.
 */
public final class ExpertSharding {
  /** The cluster role of the nodes that host expert entities. */
  public static final String ROLE = "expert";

  /** The dispatcher the hosted entities run (and compute) on. */
  static final String ENTITY_DISPATCHER = "moe.expert.entity-dispatcher";

  // Systems on which ExpertNode has inited the hosting region (so initProxy may return it).
  private static final Set<ActorSystem<?>> HOSTING = Collections.synchronizedSet(
      Collections.newSetFromMap(new WeakHashMap<>()));

  private ExpertSharding() {}

  /**
   * The sharding region (or proxy) of the expert entities, for a node that does not host them:
   * a router. On a node with the {@value #ROLE} role the {@link ExpertNode} must be started
   * first (it inits the hosting region; init is idempotent, so this returns that region).
   */
  public static ActorRef<ShardingEnvelope<ExpertCommand>> initProxy(ActorSystem<?> system) {
    if (Cluster.get(system).selfMember().hasRole(ROLE) && !HOSTING.contains(system)) {
      throw new IllegalStateException(
          "this node has the '" + ROLE + "' role: start ExpertNode before asking for the expert"
              + " sharding proxy, so the region is created with the real entity behavior");
    }
    return ClusterSharding.get(system).init(entity(system, ctx -> Behaviors.empty()));
  }

  static ActorRef<ShardingEnvelope<ExpertCommand>> initHosting(
      ActorSystem<?> system,
      org.apache.pekko.japi.function.Function<EntityContext<ExpertCommand>, Behavior<ExpertCommand>> create) {
    ActorRef<ShardingEnvelope<ExpertCommand>> region = ClusterSharding.get(system).init(entity(system, create)
        .withEntityProps(DispatcherSelector.fromConfig(ENTITY_DISPATCHER)));
    HOSTING.add(system);
    return region;
  }

  /**
   * Entities per expert ({@code moe.expert.replicas}, 1 or 2); expert and router nodes read the
   * same key, so every node of a cluster must agree on it.
   */
  public static int replicas(ActorSystem<?> system) {
    return replicas(system.settings().config());
  }

  /** {@code moe.expert.replicas} of a full configuration, checked. */
  public static int replicas(Config config) {
    int replicas = config.getInt("moe.expert.replicas");
    if (replicas < 1 || replicas > 2) {
      throw new IllegalArgumentException("moe.expert.replicas must be 1 or 2, got " + replicas);
    }
    return replicas;
  }

  /** Shards of the expert entity type ({@code moe.expert.sharding.number-of-shards}). */
  public static int numberOfShards(ActorSystem<?> system) {
    return system.settings().config().getInt("moe.expert.sharding.number-of-shards");
  }

  /**
   * The shards a model's entities fill, and so the most expert nodes that can hold any: one per
   * column of the model ({@link ExpertShards}) up to {@code numberOfShards}, once per replica.
   */
  public static int shardsFilled(int experts, int numberOfShards, int replicas) {
    return Math.min(experts, numberOfShards) * replicas;
  }

  private static Entity<ExpertCommand, ShardingEnvelope<ExpertCommand>> entity(
      ActorSystem<?> system,
      org.apache.pekko.japi.function.Function<EntityContext<ExpertCommand>, Behavior<ExpertCommand>> create) {
    Config c = system.settings().config().getConfig("moe.expert.sharding");
    int shards = c.getInt("number-of-shards");
    if (shards < 1) {
      throw new IllegalArgumentException("moe.expert.sharding.number-of-shards must be >= 1, got " + shards);
    }
    ShardCoordinator.ShardAllocationStrategy allocation =
        ShardCoordinator.ShardAllocationStrategy$.MODULE$.leastShardAllocationStrategy(
            c.getInt("rebalance-absolute-limit"), c.getDouble("rebalance-relative-limit"));
    var entity = Entity.of(ExpertEntity.TYPE_KEY, create)
        .withRole(ROLE)
        .withSettings(ClusterShardingSettings.create(system).withNoPassivationStrategy().withRole(ROLE));
    if (replicas(system) == 1) {
      return entity.withMessageExtractor(new ExpertShards.Extractor(shards, false))
          .withAllocationStrategy(allocation);
    }
    // Two replicas: sibling shards "b#0" / "b#1", never on the same node while another can host.
    return entity.withMessageExtractor(new ExpertShards.Extractor(shards, true))
        .withAllocationStrategy(new ReplicaShards.Allocation(allocation));
  }
}

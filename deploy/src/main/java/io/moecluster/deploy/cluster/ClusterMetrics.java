package io.moecluster.deploy.cluster;

import io.moecluster.expert.ExpertEntity;
import io.prometheus.metrics.core.metrics.Gauge;
import io.prometheus.metrics.core.metrics.GaugeWithCallback;
import java.time.Duration;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.pekko.actor.Cancellable;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.cluster.ClusterEvent;
import org.apache.pekko.cluster.Member;
import org.apache.pekko.cluster.sharding.ShardRegion;
import org.apache.pekko.cluster.sharding.typed.GetShardRegionState;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.typed.Cluster;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Cluster metrics of one node, registered once per JVM in the default registry:
 *
 * <ul>
 *   <li>{@code moe_cluster_members{node,role,status}}: members of the cluster as this node sees
 *       them, per role and member status (a member with two roles counts in both), read at scrape
 *       time;
 *   <li>{@code moe_cluster_unreachable_members{node}}: members this node's failure detector marks
 *       unreachable;
 *   <li>{@code moe_sharding_shards{node}}, {@code moe_sharding_entities{node}}: shards and expert
 *       entities this node hosts (expert nodes only), polled from Cluster Sharding's {@code
 *       GetShardRegionState} every {@code moe.metrics.sharding-poll-interval}.
 * </ul>
 */
public final class ClusterMetrics implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(ClusterMetrics.class);

  private static final Map<String, ActorSystem<?>> systems = new ConcurrentHashMap<>();

  private final String node;
  private final ActorSystem<?> system;
  private final Cancellable poll;

  private ClusterMetrics(String node, ActorSystem<?> system, Cancellable poll) {
    this.node = node;
    this.system = system;
    this.poll = poll;
  }

  /**
   * Starts the cluster metrics of the node {@code system} is; polls its shards when it hosts
   * expert entities ({@code expertHost}).
   */
  public static ClusterMetrics start(ActorSystem<?> system, boolean expertHost, Duration pollInterval) {
    Holder.touch();
    String node = Cluster.get(system).selfMember().address().toString();
    systems.put(node, system);
    Cancellable poll = null;
    if (expertHost) {
      Holder.SHARDS.labelValues(node).set(0);
      Holder.ENTITIES.labelValues(node).set(0);
      poll = system.scheduler().scheduleAtFixedRate(Duration.ZERO, pollInterval,
          () -> pollShards(system, node, pollInterval), system.executionContext());
    }
    ClusterMetrics metrics = new ClusterMetrics(node, system, poll);
    system.getWhenTerminated().thenRun(metrics::close);
    return metrics;
  }

  private static void pollShards(ActorSystem<?> system, String node, Duration timeout) {
    AskPattern.<org.apache.pekko.cluster.sharding.typed.ClusterShardingQuery, ShardRegion.CurrentShardRegionState>ask(
            ClusterSharding.get(system).shardState(),
            replyTo -> new GetShardRegionState(ExpertEntity.TYPE_KEY, replyTo),
            timeout,
            system.scheduler())
        .whenComplete((state, error) -> {
          if (error != null) {
            log.debug("shard region state of {} not available: {}", node, error.toString());
            return;
          }
          if (!systems.containsKey(node)) {
            return; // closed meanwhile
          }
          int shards = 0;
          long entities = 0;
          for (ShardRegion.ShardState s : state.getShards()) {
            shards++;
            entities += s.getEntityIds().size();
          }
          Holder.SHARDS.labelValues(node).set(shards);
          Holder.ENTITIES.labelValues(node).set(entities);
        });
  }

  /** Members per (role, status) as seen from {@code system}; roles without Pekko's dc- roles. */
  static Map<String, Map<String, Integer>> membersByRoleAndStatus(ClusterEvent.CurrentClusterState state) {
    Map<String, Map<String, Integer>> out = new TreeMap<>();
    for (Member m : state.getMembers()) {
      String status = m.status().toString().toLowerCase(Locale.ROOT);
      for (String role : m.getRoles()) {
        if (role.startsWith("dc-")) {
          continue;
        }
        out.computeIfAbsent(role, r -> new TreeMap<>()).merge(status, 1, Integer::sum);
      }
    }
    return out;
  }

  @Override
  public void close() {
    if (poll != null) {
      poll.cancel();
      Holder.SHARDS.remove(node);
      Holder.ENTITIES.remove(node);
    }
    systems.remove(node, system);
  }

  private static final class Holder {
    static final GaugeWithCallback MEMBERS = GaugeWithCallback.builder().name("moe_cluster_members")
        .help("Cluster members as this node sees them, by role and member status (joining, up, leaving, ...)")
        .labelNames("node", "role", "status")
        .callback(cb -> systems.forEach((node, system) -> {
          try {
            var state = Cluster.get(system).state();
            membersByRoleAndStatus(state).forEach((role, byStatus) ->
                byStatus.forEach((status, n) -> cb.call(n, node, role, status)));
          } catch (RuntimeException e) {
            // The node is stopping.
          }
        }))
        .register();
    static final GaugeWithCallback UNREACHABLE = GaugeWithCallback.builder().name("moe_cluster_unreachable_members")
        .help("Cluster members this node's failure detector marks unreachable")
        .labelNames("node")
        .callback(cb -> systems.forEach((node, system) -> {
          try {
            cb.call(Cluster.get(system).state().getUnreachable().size(), node);
          } catch (RuntimeException e) {
            // The node is stopping.
          }
        }))
        .register();
    static final Gauge SHARDS = Gauge.builder().withoutExemplars().name("moe_sharding_shards")
        .help("Shards of the expert entity type hosted by this node").labelNames("node").register();
    static final Gauge ENTITIES = Gauge.builder().withoutExemplars().name("moe_sharding_entities")
        .help("Expert entities (layer/expert) hosted by this node").labelNames("node").register();

    static void touch() {}
  }
}

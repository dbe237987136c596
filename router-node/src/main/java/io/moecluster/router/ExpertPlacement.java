package io.moecluster.router;

import io.moecluster.expert.ExpertEntity;
import io.moecluster.expert.ExpertSharding;
import io.moecluster.proto.cluster.v1.ExpertCommand;
import io.moecluster.proto.cluster.v1.Locate;
import io.moecluster.proto.cluster.v1.Located;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.pekko.actor.Address;
import org.apache.pekko.actor.NoSerializationVerificationNeeded;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;
import org.apache.pekko.cluster.ClusterEvent;
import org.apache.pekko.cluster.Member;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.sharding.ShardRegion;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.cluster.sharding.typed.ShardingEnvelope;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Subscribe;

/**
 * Tracks where the expert entities live and whether all of them are loaded. Once at least
 * {@code min-expert-nodes} members with role {@value ExpertSharding#ROLE} are Up and each of them
 * has a shard region registered with the coordinator (else a cold start could place every entity
 * on the first node), it sends {@link Locate} to every (layer, expert) entity and records the
 * {@link Located} answers; it retries until all have answered with loaded weights, and locates
 * again whenever expert members join or leave. With {@code moe.expert.replicas = 2} it tracks
 * both entities of every expert. The current view is published as an immutable
 * {@link Snapshot} for the router actor's status replies.
 */
public final class ExpertPlacement extends AbstractBehavior<ExpertPlacement.Command> {

  /** The tracker's view: ready when every entity answered with loaded weights. */
  public record Snapshot(boolean ready, List<Located> placement, String detail) {
    public Snapshot {
      placement = List.copyOf(placement);
    }

    /** The distinct node addresses hosting at least one entity. */
    public Set<String> nodes() {
      Set<String> nodes = new LinkedHashSet<>();
      placement.forEach(l -> nodes.add(l.getNode()));
      return nodes;
    }
  }

  /** Local messages only (never cross the network). */
  public sealed interface Command extends NoSerializationVerificationNeeded {}

  private record Tick() implements Command {}

  private record MembersChanged(ClusterEvent.MemberEvent event) implements Command {}

  private record Regions(ShardRegion.CurrentRegions regions) implements Command {}

  private record GotLocated(Located located) implements Command {}

  /** The placement tracker for a model of {@code layers x experts} routed experts. */
  public static Behavior<Command> create(ActorRef<ShardingEnvelope<ExpertCommand>> region,
      int layers, int experts, int minExpertNodes, Duration retryInterval, AtomicReference<Snapshot> view) {
    return create(region, layers, experts, 1, minExpertNodes, retryInterval, view);
  }

  /** The placement tracker for {@code replicas} entities per routed expert ({@code moe.expert.replicas}). */
  public static Behavior<Command> create(ActorRef<ShardingEnvelope<ExpertCommand>> region,
      int layers, int experts, int replicas, int minExpertNodes, Duration retryInterval,
      AtomicReference<Snapshot> view) {
    return Behaviors.setup(ctx -> Behaviors.withTimers(timers ->
        new ExpertPlacement(ctx, timers, region, layers, experts, replicas, minExpertNodes, retryInterval, view)));
  }

  /** Ticks between placement refreshes once every expert is located. */
  private static final int REFRESH_TICKS = 5;

  private final int layers;
  private final int experts;
  private final int replicas;
  private final int minExpertNodes;
  private final AtomicReference<Snapshot> view;
  private final ClusterSharding sharding;
  private final ActorRef<Located> locatedAdapter;
  private final org.apache.pekko.actor.ActorRef classicRegion;
  private final ActorRef<ShardRegion.CurrentRegions> regionsAdapter;
  private final String locatedReplyTo;

  private Set<Address> upExperts = Set.of();
  private boolean regionsConfirmed;
  private final Map<String, Located> answers = new HashMap<>(); // entity id -> latest answer
  private final Set<String> toLocate = new HashSet<>(); // entity ids that need a (fresh) answer
  private String detail = "";
  private long idleTicks;

  private ExpertPlacement(ActorContext<Command> ctx, TimerScheduler<Command> timers,
      ActorRef<ShardingEnvelope<ExpertCommand>> region, int layers, int experts, int replicas,
      int minExpertNodes, Duration retryInterval, AtomicReference<Snapshot> view) {
    super(ctx);
    this.layers = layers;
    this.experts = experts;
    this.replicas = replicas;
    this.minExpertNodes = minExpertNodes;
    this.view = view;
    this.sharding = ClusterSharding.get(ctx.getSystem());
    this.locatedAdapter = ctx.messageAdapter(Located.class, GotLocated::new);
    this.classicRegion = Adapter.toClassic(region);
    this.regionsAdapter = ctx.messageAdapter(ShardRegion.CurrentRegions.class, Regions::new);
    this.locatedReplyTo = ActorRefResolver.get(ctx.getSystem()).toSerializationFormat(locatedAdapter);
    ActorRef<ClusterEvent.MemberEvent> members = ctx.messageAdapter(ClusterEvent.MemberEvent.class, MembersChanged::new);
    Cluster.get(ctx.getSystem()).subscriptions().tell(Subscribe.create(members, ClusterEvent.MemberEvent.class));
    toLocate.addAll(allIds());
    timers.startTimerWithFixedDelay(new Tick(), retryInterval);
    publish();
  }

  @Override
  public Receive<Command> createReceive() {
    return newReceiveBuilder()
        .onMessage(Tick.class, t -> onTick())
        .onMessage(MembersChanged.class, m -> onMembersChanged())
        .onMessage(Regions.class, this::onRegions)
        .onMessage(GotLocated.class, this::onLocated)
        .build();
  }

  private Behavior<Command> onMembersChanged() {
    return onTick();
  }

  /**
   * Re-reads the Up expert members (on every event and every tick: the cluster state read here
   * may lag the event that woke us); on a change, forgets the answers from nodes that left and
   * locates every entity again once the regions are confirmed.
   */
  private void refreshMembers() {
    Set<Address> now = new HashSet<>();
    for (Member m : Cluster.get(getContext().getSystem()).state().getMembers()) {
      if (m.status() == MemberStatus.up() && m.hasRole(ExpertSharding.ROLE)) {
        now.add(m.address());
      }
    }
    if (now.equals(upExperts)) {
      return;
    }
    Set<String> gone = new HashSet<>();
    for (Address a : upExperts) {
      if (!now.contains(a)) {
        gone.add(a.toString());
      }
    }
    answers.values().removeIf(l -> gone.contains(l.getNode()));
    upExperts = Set.copyOf(now);
    regionsConfirmed = false;
    toLocate.clear();
    toLocate.addAll(allIds());
    getContext().getLog().info("Expert members Up: {}; locating the experts again", upExperts);
    String idle = idleNodes(upExperts.size(), experts, ExpertSharding.numberOfShards(getContext().getSystem()), replicas);
    if (idle != null) {
      getContext().getLog().warn(idle);
    }
    publish();
  }

  /**
   * Why some expert nodes can hold no experts, or null when every one can: a shard is a column of
   * the model, so there are only {@link ExpertSharding#shardsFilled} shards to spread.
   */
  static String idleNodes(int expertNodes, int experts, int numberOfShards, int replicas) {
    int shards = ExpertSharding.shardsFilled(experts, numberOfShards, replicas);
    if (expertNodes <= shards) {
      return null;
    }
    return expertNodes + " expert nodes are Up but the experts fill only " + shards + " shards (min(" + experts
        + " experts a layer, moe.expert.sharding.number-of-shards " + numberOfShards + ") x " + replicas
        + " replica(s), one column of the model each): " + (expertNodes - shards) + " node(s) will hold no experts";
  }

  /** Every entity id: each (layer, expert) once per replica. */
  private List<String> allIds() {
    List<String> ids = new ArrayList<>();
    for (int l = 0; l < layers; l++) {
      for (int e = 0; e < experts; e++) {
        for (int r = 0; r < replicas; r++) {
          ids.add(ExpertEntity.entityId(l, e, r, replicas));
        }
      }
    }
    return ids;
  }

  private Behavior<Command> onTick() {
    refreshMembers();
    if (toLocate.isEmpty()) {
      // Ready: now and then ask every entity again, as rebalancing may have moved some.
      if (++idleTicks % REFRESH_TICKS == 0) {
        sendLocates(answers.keySet());
      }
      return this;
    }
    idleTicks = 0;
    if (upExperts.size() < minExpertNodes) {
      detail = "waiting for " + minExpertNodes + " expert node(s) (members Up with role '" + ExpertSharding.ROLE
          + "'), " + upExperts.size() + " Up";
      publish();
    } else if (!regionsConfirmed) {
      // The typed shardState() query answers nothing on a proxy-only node: ask the region (or
      // proxy) itself, which forwards to the coordinator.
      classicRegion.tell(ShardRegion.getCurrentRegionsInstance(), Adapter.toClassic(regionsAdapter));
    } else {
      sendLocates(toLocate);
    }
    return this;
  }

  private Behavior<Command> onRegions(Regions msg) {
    if (regionsConfirmed) {
      return this;
    }
    Set<Address> regions = msg.regions().getRegions();
    Set<Address> missing = new HashSet<>(upExperts);
    missing.removeAll(regions);
    if (missing.isEmpty() && upExperts.size() >= minExpertNodes) {
      regionsConfirmed = true;
      sendLocates(toLocate);
    } else {
      detail = "waiting for the shard regions of expert node(s) " + missing + " to register";
      publish();
    }
    return this;
  }

  private void sendLocates(Set<String> ids) {
    ExpertCommand locate = ExpertCommand.newBuilder()
        .setLocate(Locate.newBuilder().setReplyTo(locatedReplyTo))
        .build();
    for (String id : ids) {
      sharding.entityRefFor(ExpertEntity.TYPE_KEY, id).tell(locate);
    }
    publish();
  }

  private Behavior<Command> onLocated(GotLocated msg) {
    Located l = msg.located();
    String id = ExpertEntity.entityId(l.getLayer(), l.getExpert(), l.getReplica(), replicas);
    answers.put(id, l);
    if (l.getLoaded()) {
      toLocate.remove(id);
    }
    publish();
    return this;
  }

  private void publish() {
    List<Located> placement = new ArrayList<>(answers.values());
    placement.sort(Comparator.comparingInt(Located::getLayer).thenComparingInt(Located::getExpert)
        .thenComparingInt(Located::getReplica));
    boolean ready = toLocate.isEmpty() && upExperts.size() >= minExpertNodes
        && placement.size() == layers * experts * replicas && placement.stream().allMatch(Located::getLoaded);
    if (ready) {
      detail = "";
    } else if (regionsConfirmed || detail.isEmpty()) {
      detail = toLocate.size() + " of " + layers * experts * replicas
          + (replicas > 1 ? " expert entities (" + replicas + " replicas each)" : " experts")
          + " not located with loaded weights yet";
    }
    Snapshot previous = view.getAndSet(new Snapshot(ready, placement, detail));
    if (ready && (previous == null || !previous.ready())) {
      getContext().getLog().info("All {} experts located on {} node(s)", placement.size(),
          view.get().nodes().size());
    }
  }
}

package io.moecluster.expert;

import com.typesafe.config.Config;
import io.prometheus.metrics.core.metrics.Counter;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import org.apache.pekko.actor.ExtendedActorSystem;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Extension;
import org.apache.pekko.actor.typed.ExtensionId;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.cluster.ClusterEvent;
import org.apache.pekko.cluster.Member;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.UniqueAddress;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Down;
import org.apache.pekko.cluster.typed.Subscribe;
import org.apache.pekko.remote.RemoteActorRefProvider;
import org.apache.pekko.remote.artery.ArteryTransport;
import org.apache.pekko.remote.artery.QuarantinedEvent;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import scala.Option;

/**
 * Downs a member whose process has crashed, without waiting for the failure detector and the
 * split brain resolver (about 4-5 s together): a member's cluster port that refuses TCP
 * connections, twice, belongs to a process that is gone ({@link CrashCheck}). A paused,
 * overloaded or partitioned member is never downed here (its port accepts or does not answer);
 * the resolver stays in charge of those.
 *
 * <p>Triggers: the member becoming unreachable (the failure detector), and {@link #suspect}
 * (the router calls it when an expert request to a node times out, before the failure detector
 * gives up). Each check runs on this extension's own thread; at most one check per member runs
 * at a time. This node downs a member only while it reaches a majority of the members (the rule
 * of keep-majority), and only the exact incarnation it probed (a restarted node has a new UID).
 *
 * <p>{@code moe.cluster.down-crashed-nodes = off} turns it off: behind a proxy or NAT that
 * answers for the members, a refused connection does not mean a dead process.
 */
public final class CrashedNodeDowning implements Extension {
  private static final Logger log = LoggerFactory.getLogger(CrashedNodeDowning.class);
  private static final AtomicLong INSTANCES = new AtomicLong();
  // A member just found alive is not probed again for this long, however many requests time out.
  private static final long RECHECK_AFTER_NANOS = Duration.ofMillis(500).toNanos();

  /** The extension id: {@code CrashedNodeDowning.ID.apply(system)} starts it once per system. */
  public static final ExtensionId<CrashedNodeDowning> ID = new ExtensionId<>() {
    @Override
    public CrashedNodeDowning createExtension(ActorSystem<?> system) {
      return new CrashedNodeDowning(system, settings(system.settings().config()), CrashCheck::tcpProbe);
    }
  };

  private final ActorSystem<?> system;
  private final CrashCheck.Settings settings;
  private final CrashCheck check;
  private final ExecutorService probes;
  private final Set<UniqueAddress> running = ConcurrentHashMap.newKeySet();
  private final Map<UniqueAddress, Long> checkedAt = new ConcurrentHashMap<>();
  private final List<Consumer<String>> refusalListeners = new CopyOnWriteArrayList<>();

  CrashedNodeDowning(ActorSystem<?> system, CrashCheck.Settings settings, CrashCheck.Prober prober) {
    this.system = system;
    this.settings = settings;
    this.check = new CrashCheck(settings, prober, d -> Thread.sleep(d.toMillis()));
    if (!settings.enabled()) {
      this.probes = null;
      return;
    }
    Metrics.DOWNS.labelValues(Cluster.get(system).selfMember().address().toString()); // at 0 from the start
    long n = INSTANCES.incrementAndGet();
    this.probes = Executors.newSingleThreadExecutor(r -> Thread.ofPlatform().daemon().name("moe-crash-probe-" + n).unstarted(r));
    system.getWhenTerminated().thenRun(probes::shutdownNow);
    system.systemActorOf(Behaviors.<ClusterEvent.UnreachableMember>setup(ctx -> {
      Cluster.get(ctx.getSystem()).subscriptions().tell(Subscribe.create(ctx.getSelf(), ClusterEvent.UnreachableMember.class));
      return Behaviors.receiveMessage(u -> {
        suspect(u.member().uniqueAddress());
        return Behaviors.same();
      });
    }), "moe-crash-downing-" + n, Props.empty());
  }

  /** {@code moe.cluster.down-crashed-nodes} and {@code moe.cluster.crash-probe}. */
  public static CrashCheck.Settings settings(Config config) {
    Config probe = config.getConfig("moe.cluster.crash-probe");
    return new CrashCheck.Settings(config.getBoolean("moe.cluster.down-crashed-nodes"), probe.getDuration("timeout"),
        probe.getInt("confirmations"), probe.getDuration("interval"));
  }

  public CrashCheck.Settings settings() {
    return settings;
  }

  /**
   * Something toward the member at {@code address} ({@code pekko://moe@host:port}) failed: check
   * whether its process crashed. Returns at once.
   */
  public void suspect(String address) {
    if (probes == null) {
      return;
    }
    for (Member m : Cluster.get(system).state().getMembers()) {
      if (m.address().toString().equals(address)) {
        suspect(m.uniqueAddress());
        return;
      }
    }
  }

  /** Checks the member incarnation {@code target}, unless a check of it runs or just ended. */
  public void suspect(UniqueAddress target) {
    if (probes == null) {
      return;
    }
    Long last = checkedAt.get(target);
    if (last != null && System.nanoTime() - last < RECHECK_AFTER_NANOS) {
      return;
    }
    if (!running.add(target)) {
      return;
    }
    try {
      probes.execute(() -> {
        try {
          run(target);
        } catch (RuntimeException | LinkageError e) {
          log.warn("Checking member {} for a crash failed", target.address(), e);
        } finally {
          long now = System.nanoTime();
          // Marks older than the recheck interval stop nothing: drop them, so that a long-lived
          // cluster whose nodes restart does not keep one entry per incarnation for ever.
          checkedAt.values().removeIf(at -> now - at >= RECHECK_AFTER_NANOS);
          checkedAt.put(target, now);
          running.remove(target);
        }
      });
    } catch (RejectedExecutionException e) {
      running.remove(target); // the system is terminating
    }
  }

  /**
   * Tells {@code listener} the address ({@code pekko://moe@host:port}) of a member whose cluster
   * port has just refused a connection, before the confirmations that may down it: a router
   * routes around it at once. Called on the probe thread; keep it short.
   */
  public void onRefusal(Consumer<String> listener) {
    refusalListeners.add(listener);
  }

  /**
   * Stops telling {@code listener} of refusals: the extension lives as long as the system, and a
   * router's executor closed before it must not stay reachable from here (nor be told).
   */
  public void removeRefusalListener(Consumer<String> listener) {
    refusalListeners.remove(listener);
  }

  private void run(UniqueAddress target) {
    CrashCheck.Decision d;
    try {
      d = check.decide(target, new LiveView(Cluster.get(system)), refused -> {
        for (Consumer<String> l : refusalListeners) {
          try {
            l.accept(refused.address().toString());
          } catch (RuntimeException e) {
            log.warn("A refusal listener failed", e);
          }
        }
      });
    } catch (InterruptedException e) {
      return; // the system is terminating
    }
    if (!d.down()) {
      log.debug("Member {} (uid {}) not downed: {}", target.address(), target.longUid(), d.reason());
      return;
    }
    log.warn("Downing member {} (uid {}): its process has crashed ({})", target.address(), target.longUid(), d.reason());
    Metrics.DOWNS.labelValues(Cluster.get(system).selfMember().address().toString()).inc();
    Cluster.get(system).manager().tell(new Down(target.address()));
    markTerminated(target);
  }

  /**
   * Quarantines the crashed incarnation. Pekko removes a downed member only once it is
   * unreachable (or has seen its own downing, which a dead process never will): without this the
   * removal, and so the move of its shards, would still wait for the failure detector. On a
   * quarantine the cluster marks the member terminated (unreachable) and downs it, which is what
   * Pekko itself does to a removed member: only that UID is shut out, a restarted process on the
   * same address joins as usual.
   *
   * <p>A process whose ActorSystem stopped without leaving the cluster (no coordinated shutdown)
   * tells its peers on the way down, and they quarantine it "harmlessly", which the cluster does
   * not act on; then the quarantine here changes nothing, and the cluster is told directly.
   *
   * <p>This is Pekko's internal API (there is no public one to the same effect), hence the
   * guard: without it only the speed-up is lost, the down stands.
   */
  private void markTerminated(UniqueAddress target) {
    try {
      var classic = (ExtendedActorSystem) Adapter.toClassic(system);
      if (!(classic.provider() instanceof RemoteActorRefProvider remote)) {
        return;
      }
      boolean already = remote.transport() instanceof ArteryTransport artery
          && artery.association(target.address()).associationState().isQuarantined(target.longUid());
      remote.quarantine(target.address(), Option.apply((Object) target.longUid()),
          "its process crashed (its cluster port refuses connections)");
      if (already) {
        classic.eventStream().publish(
            new QuarantinedEvent(new org.apache.pekko.remote.UniqueAddress(target.address(), target.longUid())));
      }
    } catch (RuntimeException | LinkageError e) {
      log.warn("Could not mark crashed member {} terminated; it is removed once the failure detector agrees",
          target.address(), e);
    }
  }

  /** The cluster state of this node, read when the check asks. */
  private record LiveView(Cluster cluster) implements CrashCheck.View {
    @Override
    public UniqueAddress self() {
      return cluster.selfMember().uniqueAddress();
    }

    @Override
    public UniqueAddress live(UniqueAddress target) {
      for (Member m : cluster.state().getMembers()) {
        if (m.address().equals(target.address())) {
          return m.status() == MemberStatus.down() || m.status() == MemberStatus.removed() ? null : m.uniqueAddress();
        }
      }
      return null;
    }

    @Override
    public int members() {
      int n = 0;
      for (Member m : cluster.state().getMembers()) {
        if (counts(m)) {
          n++;
        }
      }
      return n;
    }

    @Override
    public int reachable() {
      var state = cluster.state();
      Set<Member> unreachable = state.getUnreachable();
      int n = 0;
      for (Member m : state.getMembers()) {
        if (counts(m) && !unreachable.contains(m)) {
          n++;
        }
      }
      return n;
    }

    /** Like keep-majority: joining and weakly-up members do not count yet, downed ones no more. */
    private static boolean counts(Member m) {
      MemberStatus s = m.status();
      return s == MemberStatus.up() || s == MemberStatus.leaving() || s == MemberStatus.exiting();
    }
  }

  /** {@code moe_cluster_crash_downs_total{node}}. */
  static final class Metrics {
    static final Counter DOWNS = Counter.builder().withoutExemplars().name("moe_cluster_crash_downs_total")
        .help("Members this node downed because their cluster port refused connections (a crashed process)")
        .labelNames("node").register();

    private Metrics() {}
  }
}

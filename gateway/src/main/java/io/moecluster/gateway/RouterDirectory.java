package io.moecluster.gateway;

import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.protobuf.services.HealthStatusManager;
import io.moecluster.proto.cluster.v1.GetStatus;
import io.moecluster.proto.cluster.v1.RouterCommand;
import io.moecluster.proto.cluster.v1.RouterStatus;
import io.moecluster.proto.v1.InferenceGrpc;
import io.moecluster.router.RouterActor;
import java.time.Duration;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import org.apache.pekko.actor.Address;
import org.apache.pekko.actor.NoSerializationVerificationNeeded;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.receptionist.Receptionist;
import org.apache.pekko.cluster.ClusterEvent;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Subscribe;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The gateway's view of the routers: the Receptionist listing under {@link
 * RouterActor#SERVICE_KEY}, this gateway's in-flight streams per router (for least-loaded choice),
 * and each router's last {@link RouterStatus}, polled every {@code health-poll-interval}. It drives
 * the health service: SERVING while some listed router reports {@code experts_ready}, NOT_SERVING
 * otherwise.
 */
final class RouterDirectory {
  private static final Logger log = LoggerFactory.getLogger(RouterDirectory.class);
  static final String SERVICE_NAME = InferenceGrpc.SERVICE_NAME;

  private final ActorSystem<?> system;
  private final HealthStatusManager health;
  private final Duration askTimeout;
  private final Duration pollInterval;
  private final Map<ActorRef<RouterCommand>, AtomicInteger> inFlight = new ConcurrentHashMap<>();
  private final Map<ActorRef<RouterCommand>, RouterStatus> statuses = new ConcurrentHashMap<>();
  private volatile List<ActorRef<RouterCommand>> routers = List.of();
  private volatile ServingStatus serving = ServingStatus.NOT_SERVING;
  /** Cluster members the failure detector currently reports unreachable. */
  private final Set<Address> unreachable = ConcurrentHashMap.newKeySet();
  private volatile Consumer<Address> onUnreachable = a -> {};
  private volatile boolean terminal;

  RouterDirectory(ActorSystem<?> system, HealthStatusManager health, GatewaySettings settings) {
    this.system = system;
    this.health = health;
    this.askTimeout = settings.routerAskTimeout();
    this.pollInterval = settings.healthPollInterval();
    setServing(ServingStatus.NOT_SERVING);
  }

  /** A router chosen for one stream; {@link #release} gives back its in-flight count once. */
  record Lease(ActorRef<RouterCommand> router, AtomicInteger count, AtomicBoolean released) {
    void release() {
      if (released.compareAndSet(false, true)) {
        count.decrementAndGet();
      }
    }
  }

  /** The listed router with the fewest of this gateway's streams, or empty when none is listed. */
  Optional<Lease> acquire() {
    return acquire(Set.of());
  }

  /**
   * As {@link #acquire()}, leaving out {@code excluded} (routers a stream already lost: the listing
   * may still name a dead router until the cluster removes its node).
   */
  Optional<Lease> acquire(Set<ActorRef<RouterCommand>> excluded) {
    List<ActorRef<RouterCommand>> current =
        routers.stream()
            .filter(r -> !excluded.contains(r) && !unreachable.contains(r.path().address()))
            .toList();
    // Prefer routers that reported ready; fall back to any listed one.
    List<ActorRef<RouterCommand>> ready =
        current.stream().filter(r -> isReady(statuses.get(r))).toList();
    List<ActorRef<RouterCommand>> candidates = ready.isEmpty() ? current : ready;
    Optional<ActorRef<RouterCommand>> best =
        candidates.stream()
            .min(
                Comparator.comparingInt((ActorRef<RouterCommand> r) -> counter(r).get())
                    .thenComparing(r -> r.path().toString()));
    return best.map(
        r -> {
          AtomicInteger count = counter(r);
          count.incrementAndGet();
          return new Lease(r, count, new AtomicBoolean());
        });
  }

  /**
   * Whom to tell when a member becomes unreachable (the gateway moves the streams of routers there
   * at once instead of waiting for the node to be downed and removed).
   */
  void onUnreachable(Consumer<Address> listener) {
    onUnreachable = listener;
  }

  int inFlight(ActorRef<RouterCommand> router) {
    AtomicInteger c = inFlight.get(router);
    return c == null ? 0 : c.get();
  }

  /** Listed routers whose last status said experts_ready. */
  long readyCount() {
    return routers.stream().filter(r -> isReady(statuses.get(r))).count();
  }

  List<ActorRef<RouterCommand>> routers() {
    return routers;
  }

  /**
   * A fresh status with the expert placement from a ready router (else any), falling back to the
   * last polled one, which has no placement.
   */
  CompletionStage<Optional<RouterStatus>> status() {
    List<ActorRef<RouterCommand>> current = routers;
    Optional<ActorRef<RouterCommand>> target =
        current.stream()
            .filter(r -> isReady(statuses.get(r)))
            .findFirst()
            .or(() -> current.stream().findFirst());
    if (target.isEmpty()) {
      return CompletableFuture.completedFuture(Optional.empty());
    }
    ActorRef<RouterCommand> router = target.get();
    return AskPattern.<RouterCommand, RouterStatus>ask(
            router, replyTo -> getStatus(system, replyTo, true), askTimeout, system.scheduler())
        .handle(
            (status, error) ->
                error == null ? Optional.of(status) : Optional.ofNullable(statuses.get(router)));
  }

  ServingStatus serving() {
    return serving;
  }

  /** Health turns NOT_SERVING for good (shutdown). */
  void enterTerminalState() {
    terminal = true;
    health.enterTerminalState();
  }

  static RouterCommand getStatus(
      ActorSystem<?> system, ActorRef<RouterStatus> replyTo, boolean withPlacement) {
    return RouterCommand.newBuilder()
        .setGetStatus(
            GetStatus.newBuilder()
                .setReplyTo(ActorRefResolver.get(system).toSerializationFormat(replyTo))
                .setWithPlacement(withPlacement))
        .build();
  }

  private static boolean isCluster(ActorSystem<?> system) {
    return "cluster".equals(system.settings().config().getString("pekko.actor.provider"));
  }

  private AtomicInteger counter(ActorRef<RouterCommand> router) {
    return inFlight.computeIfAbsent(router, r -> new AtomicInteger());
  }

  private static boolean isReady(RouterStatus status) {
    return status != null && status.getExpertsReady();
  }

  private void updateServing() {
    boolean ready = routers.stream().anyMatch(r -> isReady(statuses.get(r)));
    setServing(ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
  }

  private void setServing(ServingStatus status) {
    if (terminal) {
      return;
    }
    if (status != serving) {
      log.info("gateway health: {} ({} router(s) listed)", status, routers.size());
    }
    serving = status;
    health.setStatus(HealthStatusManager.SERVICE_NAME_ALL_SERVICES, status);
    health.setStatus(SERVICE_NAME, status);
  }

  // --- the actor that keeps the listing and polls the routers ---

  private enum Tick implements NoSerializationVerificationNeeded {
    INSTANCE
  }

  /** Stops the directory actor (gateway shutdown). */
  enum Stop implements NoSerializationVerificationNeeded {
    INSTANCE
  }

  private record Polled(ActorRef<RouterCommand> router, RouterStatus status, Throwable error)
      implements NoSerializationVerificationNeeded {}

  Behavior<Object> behavior() {
    return Behaviors.setup(
        context -> {
          ActorRef<Receptionist.Listing> listingAdapter =
              context.messageAdapter(Receptionist.Listing.class, l -> l);
          context
              .getSystem()
              .receptionist()
              .tell(Receptionist.subscribe(RouterActor.SERVICE_KEY, listingAdapter));
          if (isCluster(context.getSystem())) {
            ActorRef<ClusterEvent.ReachabilityEvent> reachability =
                context.messageAdapter(ClusterEvent.ReachabilityEvent.class, e -> e);
            ActorRef<ClusterEvent.MemberRemoved> removed =
                context.messageAdapter(ClusterEvent.MemberRemoved.class, e -> e);
            var subscriptions = Cluster.get(context.getSystem()).subscriptions();
            subscriptions.tell(Subscribe.create(reachability, ClusterEvent.ReachabilityEvent.class));
            // A node that comes back under the same address is a new member, reachable.
            subscriptions.tell(Subscribe.create(removed, ClusterEvent.MemberRemoved.class));
          }
          return Behaviors.withTimers(
              timers -> {
                timers.startTimerWithFixedDelay(Tick.INSTANCE, Duration.ZERO, pollInterval);
                return Behaviors.receive(Object.class)
                    .onMessage(Stop.class, stop -> Behaviors.stopped())
                    .onMessage(
                        ClusterEvent.UnreachableMember.class,
                        e -> {
                          Address address = e.member().address();
                          unreachable.add(address);
                          if (routers.stream().anyMatch(r -> r.path().address().equals(address))) {
                            log.warn("router node {} is unreachable; moving its streams", address);
                            onUnreachable.accept(address);
                          }
                          return Behaviors.same();
                        })
                    .onMessage(
                        ClusterEvent.ReachableMember.class,
                        e -> {
                          unreachable.remove(e.member().address());
                          return Behaviors.same();
                        })
                    .onMessage(
                        ClusterEvent.MemberRemoved.class,
                        e -> {
                          unreachable.remove(e.member().address());
                          return Behaviors.same();
                        })
                    .onMessage(
                        Receptionist.Listing.class,
                        listing -> {
                          List<ActorRef<RouterCommand>> now =
                              List.copyOf(listing.getServiceInstances(RouterActor.SERVICE_KEY));
                          if (!now.equals(routers)) {
                            log.info("routers listed: {}", now.size());
                          }
                          routers = now;
                          statuses.keySet().retainAll(now);
                          inFlight
                              .entrySet()
                              .removeIf(e -> !now.contains(e.getKey()) && e.getValue().get() == 0);
                          updateServing();
                          return Behaviors.same();
                        })
                    .onMessage(
                        Tick.class,
                        t -> {
                          for (ActorRef<RouterCommand> router : routers) {
                            context.ask(
                                RouterStatus.class,
                                router,
                                askTimeout,
                                replyTo -> getStatus(context.getSystem(), replyTo, false),
                                (status, error) -> new Polled(router, status, error));
                          }
                          if (routers.isEmpty()) {
                            updateServing();
                          }
                          return Behaviors.same();
                        })
                    .onMessage(
                        Polled.class,
                        p -> {
                          if (p.error() != null || !routers.contains(p.router())) {
                            statuses.remove(p.router());
                            if (p.error() != null) {
                              log.debug(
                                  "router {} did not answer GetStatus: {}",
                                  p.router(),
                                  p.error().toString());
                            }
                          } else {
                            statuses.put(p.router(), p.status());
                          }
                          updateServing();
                          return Behaviors.same();
                        })
                    .build();
              });
        });
  }
}

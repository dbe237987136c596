package io.moecluster.gateway;

import io.grpc.Server;
import io.grpc.ServerBuilder;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.ServerServiceDefinition;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import io.grpc.protobuf.services.ProtoReflectionService;
import io.grpc.protobuf.services.ProtoReflectionServiceV1;
import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.tokenizer.Tokenizer;
import io.moecluster.gateway.security.ApiKeyInterceptor;
import io.moecluster.gateway.security.ClientStreamLimiter;
import io.moecluster.gateway.security.GatewaySecurity;
import io.moecluster.gateway.security.RefusedCalls;
import io.moecluster.gateway.security.StrictRequestParsing;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Props;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The gateway role: a gRPC server with the {@code moecluster.v1.Inference} service, the standard
 * {@code grpc.health.v1} health service (SERVING once a router reports its experts ready) and
 * server reflection (v1 and v1alpha). With {@link GatewaySecurity}: TLS or mutual TLS (the
 * builder's credentials), an API key on every service but health, and a cap on the calls one client
 * has open. Requests that are not valid protobuf are INVALID_ARGUMENT ({@link
 * StrictRequestParsing}). It loads the checkpoint's tokenizer and config, not its
 * weights. Owns the server, the admission gate and the actor that tracks the routers.
 */
public final class GatewayServer implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(GatewayServer.class);
  private static final AtomicInteger instances = new AtomicInteger();

  private final Server server;
  private final GatewaySettings settings;
  private final RouterDirectory routers;
  private final ActorRef<Object> directoryActor;
  private final Admission admission;
  private final InferenceService service;
  private final String modelName;
  private final String node;
  private volatile boolean stopped;

  private GatewayServer(
      Server server,
      GatewaySettings settings,
      RouterDirectory routers,
      ActorRef<Object> directoryActor,
      Admission admission,
      InferenceService service,
      String modelName,
      String node) {
    this.server = server;
    this.settings = settings;
    this.routers = routers;
    this.directoryActor = directoryActor;
    this.admission = admission;
    this.service = service;
    this.modelName = modelName;
    this.node = node;
  }

  /** Starts a plaintext Netty server on {@code settings.grpcPort()} (0 = any free port). */
  public static GatewayServer start(
      ActorSystem<?> system, GatewaySettings settings, Path modelDir) {
    return start(system, settings, NettyServerBuilder.forPort(settings.grpcPort()), modelDir);
  }

  /**
   * Starts a Netty server on {@code settings.grpcPort()} with {@code security}'s transport (TLS or
   * plaintext), API keys and per-client limit.
   */
  public static GatewayServer start(
      ActorSystem<?> system, GatewaySettings settings, GatewaySecurity security, Path modelDir) {
    return start(
        system,
        settings,
        security,
        NettyServerBuilder.forPort(settings.grpcPort(), security.serverCredentials()),
        modelDir);
  }

  /** {@link #start(ActorSystem, GatewaySettings, GatewaySecurity, ServerBuilder, Path)}, open. */
  public static GatewayServer start(
      ActorSystem<?> system, GatewaySettings settings, ServerBuilder<?> builder, Path modelDir) {
    return start(system, settings, GatewaySecurity.open(), builder, modelDir);
  }

  /**
   * Starts the gateway on the given builder (Netty, or in-process in tests) in {@code system},
   * which must be a member of the cluster (or about to join it) to see routers. The builder carries
   * the transport (TLS or not, see {@link GatewaySecurity#serverCredentials()}); {@code security}
   * adds the API-key check (every service but health) and the per-client limit (Inference).
   *
   * @throws UncheckedIOException when the server cannot bind
   */
  public static GatewayServer start(
      ActorSystem<?> system,
      GatewaySettings settings,
      GatewaySecurity security,
      ServerBuilder<?> builder,
      Path modelDir) {
    Tokenizer tokenizer = Tokenizer.load(modelDir);
    ModelConfig config = ModelConfig.load(modelDir);
    String modelName =
        !settings.modelName().isEmpty()
            ? settings.modelName()
            : modelDir.toAbsolutePath().normalize().getFileName().toString();
    HealthStatusManager health = new HealthStatusManager();
    RouterDirectory routers = new RouterDirectory(system, health, settings);
    ActorRef<Object> directoryActor =
        system.systemActorOf(
            routers.behavior(), "gateway-routers-" + instances.incrementAndGet(), Props.empty());
    Admission admission = new Admission(settings.maxRunning(), settings.maxQueued());
    InferenceService service =
        new InferenceService(system, settings, tokenizer, config, modelName, admission, routers);
    // The health service stays open: load balancers and Kubernetes probe it without a key.
    // Every request is parsed strictly (malformed bytes are INVALID_ARGUMENT, not INTERNAL).
    RefusedCalls.register();
    Optional<ServerInterceptor> auth =
        security.authenticates()
            ? Optional.of(new ApiKeyInterceptor(security.apiKeys()))
            : Optional.empty();
    ServerServiceDefinition inference =
        ServerInterceptors.intercept(
            StrictRequestParsing.wrap(service.bindService()),
            new ClientStreamLimiter(security.maxStreamsPerClient()));
    Server server =
        builder
            .addService(authenticated(inference, auth))
            .addService(StrictRequestParsing.wrap(health.getHealthService().bindService()))
            .addService(
                authenticated(
                    StrictRequestParsing.wrap(ProtoReflectionServiceV1.newInstance().bindService()),
                    auth))
            .addService(
                authenticated(StrictRequestParsing.wrap(legacyReflection().bindService()), auth))
            .maxInboundMessageSize(settings.maxInboundMessageBytes())
            .build();
    try {
      server.start();
    } catch (IOException e) {
      directoryActor.tell(RouterDirectory.Stop.INSTANCE);
      throw new UncheckedIOException("gateway: cannot start the gRPC server: " + e.getMessage(), e);
    }
    log.info(
        "gateway serving model '{}' on port {} (max running {}, max queued {}; {})",
        modelName,
        server.getPort(),
        settings.maxRunning(),
        settings.maxQueued(),
        security.describe());
    security.warning().ifPresent(w -> log.warn("gateway: {}", w));
    String node = nodeName(system);
    GatewayMetrics.track(node, admission);
    return new GatewayServer(
        server, settings, routers, directoryActor, admission, service, modelName, node);
  }

  /** The node label of this gateway's gauges: its cluster address, as the other roles use. */
  private static String nodeName(ActorSystem<?> system) {
    try {
      return org.apache.pekko.cluster.typed.Cluster.get(system).selfMember().address().toString();
    } catch (RuntimeException e) {
      return system.address().toString();
    }
  }

  /** {@code service} behind the API-key check when there is one (it runs before anything else). */
  private static ServerServiceDefinition authenticated(
      ServerServiceDefinition service, Optional<ServerInterceptor> auth) {
    return auth.map(a -> ServerInterceptors.intercept(service, a)).orElse(service);
  }

  @SuppressWarnings("deprecation") // v1alpha, for grpcurl versions and tools that predate v1
  private static io.grpc.BindableService legacyReflection() {
    return ProtoReflectionService.newInstance();
  }

  /** The port the server listens on (-1 for an in-process server). */
  public int port() {
    return server.getPort();
  }

  public String modelName() {
    return modelName;
  }

  public GatewaySettings settings() {
    return settings;
  }

  /** Streams holding an admission slot now. */
  public int runningStreams() {
    return admission.running();
  }

  /** Streams waiting for an admission slot now. */
  public int queuedStreams() {
    return admission.queued();
  }

  /** The routers this gateway sees (tests). */
  RouterDirectory directory() {
    return routers;
  }

  /** Whether the health service says SERVING now. */
  public boolean isServing() {
    return routers.serving() == io.grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING;
  }

  /**
   * Stops accepting calls (health NOT_SERVING), lets running streams finish for up to {@code
   * drain}, then cancels the rest (which cancels their sequences on the routers). Returns true when
   * every call ended within the drain time.
   */
  public synchronized boolean shutdownGracefully(Duration drain) {
    if (stopped) {
      return true;
    }
    stopped = true;
    routers.enterTerminalState();
    server.shutdown();
    boolean drained = false;
    try {
      drained = server.awaitTermination(drain.toMillis(), TimeUnit.MILLISECONDS);
      if (!drained) {
        log.info("gateway: drain time {} over; ending the remaining streams", drain);
        // UNAVAILABLE rather than the transport's bare cancel: it tells clients to resume the
        // stream on another gateway. A moment for those statuses to go out, then the hard stop.
        service.endStreams();
        if (!server.awaitTermination(1, TimeUnit.SECONDS)) {
          server.shutdownNow();
        }
        server.awaitTermination(5, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      server.shutdownNow();
    } finally {
      directoryActor.tell(RouterDirectory.Stop.INSTANCE);
      GatewayMetrics.untrack(node, admission);
    }
    return drained;
  }

  /** {@link #shutdownGracefully} with the configured drain timeout. */
  @Override
  public void close() {
    shutdownGracefully(settings.drainTimeout());
  }
}

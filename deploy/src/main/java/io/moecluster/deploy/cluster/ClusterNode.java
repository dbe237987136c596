package io.moecluster.deploy.cluster;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigParseOptions;
import com.typesafe.config.ConfigUtil;
import com.typesafe.config.ConfigValueFactory;
import io.grpc.ServerBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.moecluster.deploy.cli.UserError;
import io.moecluster.expert.CrashedNodeDowning;
import io.moecluster.expert.ExpertNode;
import io.moecluster.expert.ExpertNodeSettings;
import io.moecluster.gateway.GatewayServer;
import io.moecluster.gateway.GatewaySettings;
import io.moecluster.gateway.security.GatewaySecurity;
import io.moecluster.gateway.security.ReloadingServerCredentials;
import io.moecluster.router.RouterNode;
import io.moecluster.router.RouterSettings;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.apache.pekko.Done;
import org.apache.pekko.actor.Address;
import org.apache.pekko.actor.CoordinatedShutdown;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Join;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One moe cluster node in this JVM: builds its Pekko config from a {@link NodeSpec}, creates the
 * ActorSystem {@code moe}, starts the roles in the order expert, router, gateway, and registers
 * their shutdown with CoordinatedShutdown so that any way the node stops (SIGTERM, {@link
 * #shutdown()}, being downed) drains the gateway first, then stops the router, and closes the
 * expert role only after the node left the cluster and its shards were handed off.
 *
 * <p>Config layers, first wins: {@code --conf key=value}, the flags (NodeSpec), system
 * properties, {@code application.conf}, {@code moe-node.conf} (this module's defaults, every key
 * commented), the modules' {@code reference.conf}.
 */
public final class ClusterNode implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(ClusterNode.class);

  /** The ActorSystem name; every node of a cluster must use the same. */
  public static final String SYSTEM_NAME = "moe";

  /** The model directory of the node; the roles' own keys ({@code moe.expert.model-dir}...) follow it. */
  public static final String MODEL_DIR_KEY = "moe.model-dir";

  /** The gateway's own setting: how long running streams may finish when the node stops. */
  static final String DRAIN_TIMEOUT_KEY = "moe.gateway.drain-timeout";

  /** How often an expert node asks Cluster Sharding for the shards and entities it hosts. */
  static final String SHARDING_POLL_KEY = "moe.metrics.sharding-poll-interval";

  private final NodeSpec spec;
  private final ActorSystem<Void> system;
  private volatile GatewayServer gateway;
  private volatile MetricsEndpoint.Lease metrics;

  private ClusterNode(NodeSpec spec, ActorSystem<Void> system) {
    this.spec = spec;
    this.system = system;
  }

  /** The full, resolved config of the node {@code spec} describes. */
  public static Config config(NodeSpec spec) {
    Map<String, Object> flags = new LinkedHashMap<>();
    flags.put("pekko.actor.provider", "cluster");
    flags.put("pekko.remote.artery.canonical.hostname", spec.host());
    flags.put("pekko.remote.artery.canonical.port", spec.port());
    List<String> roles = new ArrayList<>();
    for (Role role : Role.values()) {
      if (spec.has(role)) {
        roles.add(role.clusterRole());
      }
    }
    flags.put("pekko.cluster.roles", roles);
    flags.put(
        "pekko.cluster.seed-nodes",
        spec.seedNodes().stream().map(s -> "pekko://" + SYSTEM_NAME + "@" + s).toList());
    String modelDir = spec.modelDir().toAbsolutePath().normalize().toString();
    flags.put(MODEL_DIR_KEY, modelDir);
    // Each role reads its own key (moe.expert.model-dir, ...): the one --model names them all.
    for (Role role : Role.values()) {
      flags.put("moe." + role.clusterRole() + ".model-dir", modelDir);
    }
    if (spec.has(Role.GATEWAY)) {
      // The gateway builds its server on the builder ClusterNode gives it; its own port key says
      // the same, for anything that reads the settings.
      flags.put(NodeSpec.GRPC_PORT_KEY, spec.grpcPort());
    }
    if (spec.metricsPort() != null) {
      flags.put(MetricsEndpoint.PORT_KEY, spec.metricsPort());
    }
    Config flagConfig = ConfigFactory.parseMap(flags, "moe command-line flags");

    Config base =
        ConfigFactory.defaultOverrides()
            .withFallback(ConfigFactory.defaultApplication())
            .withFallback(ConfigFactory.parseResources(ClusterNode.class.getClassLoader(), "moe-node.conf"))
            .withFallback(ConfigFactory.defaultReference());
    Config overrides = overrides(spec.overrides()); // checks the keys' syntax first
    checkKnown(overrides, base);
    return withDrainRoom(overrides.withFallback(flagConfig).withFallback(base).resolve());
  }

  /** Subtrees of moe's settings whose keys are Pekko's, not ours: any key below them is accepted. */
  private static final List<String> FREE_FORM = List.of("moe.expert.entity-dispatcher");

  /**
   * A {@code --conf moe.*} key that no module defines is a typo ({@code api-key-file} for
   * {@code api-keys-file}): taking it silently would start a gateway without the protection asked
   * for. Pekko's own keys are not checked: many of its settings have no default to check against.
   */
  static void checkKnown(Config overrides, Config base) {
    // Every setting the values hold, so that --conf 'moe.gateway={api-key-file=...}' is checked too.
    for (var setting : overrides.entrySet()) {
      String key = setting.getKey();
      if (!key.startsWith("moe.") || FREE_FORM.stream().anyMatch(f -> key.equals(f) || key.startsWith(f + "."))) {
        continue;
      }
      if (!base.hasPathOrNull(key)) {
        throw new IllegalArgumentException("--conf " + key + ": no such setting (the moe.* settings, each"
            + " commented, are in the modules' reference.conf; see the README's Configuration)");
      }
    }
  }

  /** CoordinatedShutdown's phase of the gateway's drain. */
  static final String UNBIND_TIMEOUT_KEY = "pekko.coordinated-shutdown.phases.service-unbind.timeout";
  /** What the drain phase needs beyond the drain itself: the gRPC server's own shutdown. */
  private static final Duration DRAIN_MARGIN = Duration.ofSeconds(10);

  /**
   * The gateway drains in the service-unbind phase, and Pekko moves on when a phase times out: a
   * drain longer than the phase would be cut short with its streams. So the phase is made to
   * last at least the drain and a margin.
   */
  static Config withDrainRoom(Config config) {
    if (!config.hasPath(DRAIN_TIMEOUT_KEY) || !config.hasPath(UNBIND_TIMEOUT_KEY)) {
      return config;
    }
    Duration needed = config.getDuration(DRAIN_TIMEOUT_KEY).plus(DRAIN_MARGIN);
    if (config.getDuration(UNBIND_TIMEOUT_KEY).compareTo(needed) >= 0) {
      return config;
    }
    return config.withValue(UNBIND_TIMEOUT_KEY,
        ConfigValueFactory.fromAnyRef(needed.toMillis() + "ms", "moe.gateway.drain-timeout plus " + DRAIN_MARGIN));
  }

  /**
   * {@code --conf} settings as config. A value is read as HOCON (numbers, durations, lists such as
   * {@code [a,b]}); one that is not valid HOCON (a path with a colon) is taken as a string.
   */
  static Config overrides(Map<String, String> settings) {
    Config out = ConfigFactory.empty();
    for (var e : settings.entrySet()) {
      String key = e.getKey().trim();
      try {
        ConfigUtil.splitPath(key);
      } catch (ConfigException bad) {
        throw new IllegalArgumentException("--conf: '" + key + "' is not a valid config key (" + bad.getMessage() + ")");
      }
      Config one;
      try {
        one = ConfigFactory.parseString(key + " = " + e.getValue(),
            ConfigParseOptions.defaults().setOriginDescription("--conf " + key));
        if (!one.hasPathOrNull(key)) {
          throw new IllegalArgumentException("--conf: '" + key + "' is not a valid config key");
        }
      } catch (ConfigException.Parse ex) {
        try {
          one = ConfigFactory.empty().withValue(key, ConfigValueFactory.fromAnyRef(e.getValue(), "--conf " + key));
        } catch (ConfigException bad) {
          throw new IllegalArgumentException("--conf: '" + key + "' is not a valid config key");
        }
      }
      out = one.withFallback(out);
    }
    return out;
  }

  /**
   * Starts the node: the ActorSystem, then the roles in order, then a self-join when there are no
   * seed nodes. A role that fails to start stops the node and rethrows.
   */
  public static ClusterNode start(NodeSpec spec) {
    Config config = config(spec);
    // Checked before anything starts: a bad certificate or key file stops the node at once.
    GatewaySecurity security = spec.has(Role.GATEWAY) ? GatewaySecurity.fromConfig(config) : null;
    ArteryTlsStores.check(config);
    ActorSystem<Void> system;
    try {
      system = ActorSystem.create(Behaviors.empty(), SYSTEM_NAME, config);
    } catch (RuntimeException e) {
      if (addressInUse(e)) {
        throw new UserError("--port " + spec.port() + ": cannot bind the cluster port on " + spec.host() + ":"
            + spec.port() + " (address already in use); pick another port, or 0 for any free one", e);
      }
      throw e;
    }
    ClusterNode node = new ClusterNode(spec, system);
    try {
      node.startRoles(config, security);
    } catch (RuntimeException | Error e) {
      node.shutdown();
      throw e;
    }
    return node;
  }

  /** Whether {@code e} comes from a port another process holds. */
  static boolean addressInUse(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      // Netty's native transport reports EADDRINUSE as its own IOException, not BindException,
      // and Artery wraps the bind failure in its own exception.
      if (t instanceof java.net.BindException
          || (t.getMessage() != null && t.getMessage().contains("Address already in use"))) {
        return true;
      }
    }
    return false;
  }

  private void startRoles(Config config, GatewaySecurity security) {
    startMetricsEndpoint(config);
    CoordinatedShutdown shutdown = CoordinatedShutdown.get(system);
    Duration drain = config.hasPath(DRAIN_TIMEOUT_KEY) ? config.getDuration(DRAIN_TIMEOUT_KEY) : Duration.ofSeconds(30);
    if (spec.has(Role.EXPERT)) {
      ExpertNode expert = ExpertNode.start(system, ExpertNodeSettings.fromConfig(config));
      // After the node left the cluster and handed its shards off: nothing more arrives.
      addTask(shutdown, CoordinatedShutdown.PhaseBeforeActorSystemTerminate(), "moe-expert-stop",
          () -> closeQuietly(expert, "expert"));
    }
    if (spec.has(Role.ROUTER)) {
      RouterNode router = RouterNode.start(system, RouterSettings.fromConfig(config));
      // After the gateway drained (service-unbind), before sharding and cluster shut down.
      addTask(shutdown, CoordinatedShutdown.PhaseServiceStop(), "moe-router-stop",
          () -> closeQuietly(router, "router"));
    }
    if (spec.has(Role.GATEWAY)) {
      ReloadingServerCredentials reloading = security.tls().isPresent()
          ? ReloadingServerCredentials.start(security.tls().get())
          : null;
      ServerBuilder<?> builder =
          NettyServerBuilder.forAddress(new InetSocketAddress(spec.grpcHost(), spec.grpcPort()),
                  reloading != null ? reloading.credentials() : security.serverCredentials())
              // Clients ping a silent call's connection (moe's every 20 s); gRPC's default refuses
              // pings more often than every 5 minutes and would drop those connections.
              .permitKeepAliveTime(10, TimeUnit.SECONDS)
              // And the gateway pings its clients: a vanished client's stream is cancelled and its
              // slot freed within a few minutes, not after the operating system's two hours.
              .keepAliveTime(2, TimeUnit.MINUTES)
              .keepAliveTimeout(20, TimeUnit.SECONDS);
      GatewayServer server;
      try {
        server = GatewayServer.start(system, GatewaySettings.fromConfig(config), security, builder, spec.modelDir());
      } catch (RuntimeException e) {
        if (reloading != null) {
          reloading.close();
        }
        if (addressInUse(e)) {
          throw new UserError("--grpc-port " + spec.grpcPort() + ": cannot listen on " + spec.grpcHost() + ":"
              + spec.grpcPort() + " (address already in use); pick another port, or 0 for any free one", e);
        }
        throw e;
      }
      gateway = server;
      // First of all: stop taking requests and let the running ones finish (or be cancelled).
      addTask(shutdown, CoordinatedShutdown.PhaseServiceUnbind(), "moe-gateway-drain", () -> {
        server.shutdownGracefully(drain);
        closeQuietly(server, "gateway");
        if (reloading != null) {
          reloading.close();
        }
      });
    }
    ClusterMetrics.start(system, spec.has(Role.EXPERT), config.getDuration(SHARDING_POLL_KEY));
    // Every node downs members whose process crashed (moe.cluster.down-crashed-nodes).
    CrashedNodeDowning.ID.apply(system);
    if (spec.seedNodes().isEmpty()) {
      Cluster cluster = Cluster.get(system);
      cluster.manager().tell(Join.create(cluster.selfMember().address()));
    }
  }

  /** Serves /metrics (moe.metrics.port, -1: none) until the ActorSystem terminates. */
  private void startMetricsEndpoint(Config config) {
    int port = config.getInt(MetricsEndpoint.PORT_KEY);
    if (port < -1 || port > 65535) {
      throw new UserError(MetricsEndpoint.PORT_KEY + " must be in [-1, 65535] (-1: none), got " + port);
    }
    String host = config.getString(MetricsEndpoint.HOST_KEY);
    Optional<MetricsEndpoint.Lease> lease = MetricsEndpoint.acquire(host.isBlank() ? spec.host() : host, port);
    lease.ifPresent(l -> {
      metrics = l;
      system.getWhenTerminated().thenRun(l::close);
    });
  }

  /** A blocking task on a thread of its own, so CoordinatedShutdown's dispatcher is not held. */
  private static void addTask(CoordinatedShutdown shutdown, String phase, String name, Runnable task) {
    Supplier<CompletionStage<Done>> run = () -> {
      CompletableFuture<Done> done = new CompletableFuture<>();
      Thread.ofPlatform().name(name).daemon().start(() -> {
        try {
          task.run();
          done.complete(Done.getInstance());
        } catch (Throwable t) {
          done.completeExceptionally(t);
        }
      });
      return done;
    };
    shutdown.addTask(phase, name, run);
  }

  private static void closeQuietly(AutoCloseable c, String what) {
    try {
      c.close();
    } catch (Exception e) {
      log.warn("stopping the {} role failed", what, e);
    }
  }

  public NodeSpec spec() {
    return spec;
  }

  public ActorSystem<Void> system() {
    return system;
  }

  /** This node's cluster address, e.g. {@code pekko://moe@127.0.0.1:25520}. */
  public Address address() {
    return Cluster.get(system).selfMember().address();
  }

  /** The gateway's bound gRPC address ({@code grpcHost:actualPort}), if this node is a gateway. */
  public Optional<HostPort> grpcAddress() {
    GatewayServer g = gateway;
    return g == null ? Optional.empty() : Optional.of(new HostPort(spec.grpcHost(), g.port()));
  }

  /** Whether this node's gateway says SERVING now (false without the gateway role). */
  public boolean gatewayServing() {
    GatewayServer g = gateway;
    return g != null && g.isServing();
  }

  /** Where this node serves {@code /metrics}, unless {@code moe.metrics.port} is -1. */
  public Optional<HostPort> metricsAddress() {
    MetricsEndpoint.Lease l = metrics;
    return l == null ? Optional.empty() : Optional.of(l.address());
  }

  /** Completes when the ActorSystem has terminated, whatever stopped it. */
  public CompletionStage<Done> whenTerminated() {
    return system.getWhenTerminated();
  }

  /** Why the node is shutting down, if it is; empty while it runs. */
  public Optional<CoordinatedShutdown.Reason> shutdownReason() {
    return CoordinatedShutdown.get(system).getShutdownReason();
  }

  /** Runs CoordinatedShutdown (gateway drain, router, cluster leave, expert) and waits for it. */
  public void shutdown() {
    CoordinatedShutdown.get(system).runAll(CoordinatedShutdown.unknownReason());
    try {
      system.getWhenTerminated().toCompletableFuture().get(2, TimeUnit.MINUTES);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (Exception e) {
      log.warn("node did not terminate within 2 minutes", e);
    }
  }

  @Override
  public void close() {
    shutdown();
  }
}

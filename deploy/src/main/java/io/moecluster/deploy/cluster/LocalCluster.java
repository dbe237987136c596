package io.moecluster.deploy.cluster;

import io.grpc.ManagedChannel;
import io.moecluster.deploy.cli.ExitCodes;
import io.moecluster.deploy.cli.UserError;
import io.moecluster.proto.v1.GetModelInfoRequest;
import io.moecluster.proto.v1.InferenceGrpc;
import io.moecluster.proto.v1.ModelInfo;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * A cluster of child JVMs on loopback, for development, demos and end-to-end tests: one JVM with
 * the gateway and router roles (also the seed node) and N expert JVMs, each running {@code moe
 * node}. The children watch this JVM's PID and stop when it dies, so none is left behind; {@link
 * #close()} stops them one after the other (gateway first, so it drains), SIGTERM then SIGKILL.
 */
public final class LocalCluster implements AutoCloseable {
  private static final String HOST = "127.0.0.1";
  /** Expert JVMs one local cluster may start. */
  public static final int MAX_EXPERT_NODES = 64;

  /**
   * @param basePort the seed's cluster port; expert i gets basePort + i. 0 picks free ports.
   * @param grpcPort the gateway's port; 0 picks a free one
   * @param conf {@code --conf} settings passed to every node
   * @param metricsBasePort the gateway's {@code /metrics} port; expert i gets metricsBasePort + i.
   *     0 picks free ports, -1 serves none
   */
  public record Options(
      Path model,
      int expertNodes,
      int grpcPort,
      int basePort,
      Map<String, String> conf,
      Duration startTimeout,
      Duration stopGrace,
      int metricsBasePort) {

    /** Options whose nodes serve /metrics on free ports. */
    public Options(Path model, int expertNodes, int grpcPort, int basePort, Map<String, String> conf,
        Duration startTimeout, Duration stopGrace) {
      this(model, expertNodes, grpcPort, basePort, conf, startTimeout, stopGrace, 0);
    }

    public Options {
      conf = Map.copyOf(conf);
      // One machine runs them all, each a JVM of its own: past this it is a typo, not a cluster.
      if (expertNodes < 1 || expertNodes > MAX_EXPERT_NODES) {
        throw new IllegalArgumentException(
            "--expert-nodes must be in [1, " + MAX_EXPERT_NODES + "], got " + expertNodes);
      }
      if (metricsBasePort < -1 || metricsBasePort + expertNodes > 65535) {
        throw new IllegalArgumentException("--metrics-base-port must be in [-1, " + (65535 - expertNodes)
            + "] (-1: none), got " + metricsBasePort);
      }
      if (basePort < 0 || basePort + expertNodes > 65535) {
        throw new IllegalArgumentException("--base-port must be in [0, " + (65535 - expertNodes) + "], got " + basePort);
      }
      if (grpcPort < 0 || grpcPort > 65535) {
        throw new IllegalArgumentException("--grpc-port must be in [0, 65535], got " + grpcPort);
      }
    }
  }

  private final Options options;
  private final HostPort gateway;
  private final List<ChildProcess> children = new ArrayList<>();
  private final Map<String, String> namesByAddress = new HashMap<>();
  private final Map<String, HostPort> metricsByName = new java.util.LinkedHashMap<>();
  private volatile boolean stopping;

  private LocalCluster(Options options, HostPort gateway) {
    this.options = options;
    this.gateway = gateway;
  }

  /**
   * Starts the child JVMs (without waiting for them: see {@link #awaitServing()}). Their output
   * goes to {@code log} with each line prefixed by the child's name.
   */
  public static LocalCluster start(Options options, PrintStream log) {
    int grpcPort = options.grpcPort() == 0 ? freePort() : options.grpcPort();
    LocalCluster cluster = new LocalCluster(options, new HostPort(HOST, grpcPort));
    try {
      List<Integer> ports = new ArrayList<>();
      for (int i = 0; i <= options.expertNodes(); i++) {
        ports.add(options.basePort() == 0 ? freePort() : options.basePort() + i);
      }
      String seed = HOST + ":" + ports.get(0);
      // The router places the experts once this many expert nodes are up; fewer, and every
      // expert would land on the first expert JVM to join.
      Map<String, String> routerConf = Map.of("moe.router.min-expert-nodes", Integer.toString(options.expertNodes()));
      List<Integer> metricsPorts = new ArrayList<>();
      for (int i = 0; i <= options.expertNodes(); i++) {
        int base = options.metricsBasePort();
        metricsPorts.add(base < 0 ? -1 : base == 0 ? freePort() : base + i);
      }
      cluster.spawn("gateway", "gateway,router", ports.get(0), seed, grpcPort, metricsPorts.get(0), routerConf, log);
      Map<String, String> expertConf =
          expertDefaults(options.expertNodes(), Runtime.getRuntime().availableProcessors());
      for (int i = 1; i <= options.expertNodes(); i++) {
        cluster.spawn("expert-" + i, "expert", ports.get(i), seed, 0, metricsPorts.get(i), expertConf, log);
      }
    } catch (IOException | RuntimeException e) {
      cluster.close();
      throw e instanceof IOException io ? new UncheckedIOException("cannot start a node JVM", io) : (RuntimeException) e;
    }
    return cluster;
  }

  /**
   * What each expert JVM is given unless {@code --conf} says otherwise: the expert JVMs of a local
   * cluster share one machine, so each spreads a layer's products over its share of the cores
   * ({@code moe.expert.kernel-threads}), not over all of them, where their kernel threads would
   * take each other's cores.
   */
  static Map<String, String> expertDefaults(int expertNodes, int cores) {
    return Map.of("moe.expert.kernel-threads", Integer.toString(Math.max(1, cores / expertNodes)));
  }

  private void spawn(String name, String roles, int port, String seed, int grpcPort, int metricsPort,
      Map<String, String> defaults, PrintStream log) throws IOException {
    List<String> cmd = new ArrayList<>(JavaCommand.forMainClass("io.moecluster.deploy.Moe"));
    cmd.addAll(List.of(
        "node",
        "--roles", roles,
        "--host", HOST,
        "--port", Integer.toString(port),
        "--seed-nodes", seed,
        "--model", options.model().toAbsolutePath().toString(),
        "--parent-pid", Long.toString(ProcessHandle.current().pid()),
        "--metrics-port", Integer.toString(metricsPort)));
    if (metricsPort > 0) {
      metricsByName.put(name, new HostPort(HOST, metricsPort));
    }
    if (grpcPort > 0) {
      cmd.addAll(List.of("--grpc-host", HOST, "--grpc-port", Integer.toString(grpcPort)));
    }
    Map<String, String> conf = new java.util.LinkedHashMap<>(defaults);
    conf.putAll(options.conf());
    for (var e : conf.entrySet()) {
      cmd.addAll(List.of("--conf", e.getKey() + "=" + e.getValue()));
    }
    children.add(ChildProcess.start(name, cmd, log));
    namesByAddress.put("pekko://" + ClusterNode.SYSTEM_NAME + "@" + HOST + ":" + port, name);
  }

  private static int freePort() {
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getByName(HOST))) {
      return s.getLocalPort();
    } catch (IOException e) {
      throw new UncheckedIOException("cannot find a free port", e);
    }
  }

  /** The gateway's gRPC address. */
  public HostPort gateway() {
    return gateway;
  }

  /** Each node's {@code /metrics} address by name ("gateway", "expert-1", ...), in start order. */
  public Map<String, HostPort> metricsEndpoints() {
    return java.util.Collections.unmodifiableMap(metricsByName);
  }

  public List<ChildProcess> children() {
    return List.copyOf(children);
  }

  /** The child's name ("gateway", "expert-1", ...) for a cluster address, or null. */
  public String nameOf(String nodeAddress) {
    return namesByAddress.get(nodeAddress);
  }

  /** A message naming the first child that exited, with its last lines of output. */
  public Optional<String> deadChild() {
    return firstDeadChild().map(LocalCluster::describeExit);
  }

  private Optional<ChildProcess> firstDeadChild() {
    return children.stream().filter(c -> !c.isAlive()).findFirst();
  }

  private static String describeExit(ChildProcess c) {
    StringBuilder msg = new StringBuilder().append(c.name()).append(" exited with code ").append(c.exitValue());
    List<String> tail = c.tail();
    if (!tail.isEmpty()) {
      msg.append("; its last lines:");
      for (String line : tail.subList(Math.max(0, tail.size() - 10), tail.size())) {
        msg.append(System.lineSeparator()).append("  ").append(line);
      }
    }
    return msg.toString();
  }

  /** Waits until the gateway's health says SERVING; fails early if a child dies. */
  public void awaitServing() throws InterruptedException {
    ManagedChannel channel = Gateways.channel(gateway);
    try {
      Gateways.awaitServing(channel, options.startTimeout(),
          () -> firstDeadChild().map(c -> {
            String message = "a node of the local cluster died before it was serving: " + describeExit(c);
            // A child refuses bad input (a busy port, a model it cannot read) with exit code 2, as we do.
            return c.exitValue() == ExitCodes.USAGE ? new UserError(message) : new IllegalStateException(message);
          }));
    } finally {
      Gateways.close(channel);
    }
  }

  /** The model and its expert placement, from the gateway. */
  public ModelInfo modelInfo() {
    ManagedChannel channel = Gateways.channel(gateway);
    try {
      return InferenceGrpc.newBlockingStub(channel)
          .withDeadlineAfter(10, TimeUnit.SECONDS)
          .getModelInfo(GetModelInfoRequest.getDefaultInstance());
    } finally {
      Gateways.close(channel);
    }
  }

  /** Completes with the first child that exits. */
  public CompletableFuture<ChildProcess> anyExit() {
    CompletableFuture<ChildProcess> first = new CompletableFuture<>();
    for (ChildProcess c : children) {
      c.process().onExit().thenRun(() -> first.complete(c));
    }
    return first;
  }

  public boolean stopping() {
    return stopping;
  }

  /**
   * Stops the children one after the other, gateway first (it drains and leaves), then the
   * experts in order; each gets SIGTERM and, after the grace period, SIGKILL. Idempotent.
   */
  @Override
  public synchronized void close() {
    if (stopping) {
      return;
    }
    stopping = true;
    for (ChildProcess c : children) {
      if (c.isAlive()) {
        System.err.println("moe: stopping " + c.name());
        System.err.flush();
      }
      c.stop(options.stopGrace());
    }
  }
}

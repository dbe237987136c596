package io.moecluster.deploy.cluster;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * What one cluster node is: its roles, where it listens, whom it joins, what it serves. Built from
 * the flags of {@code moe node} and {@code moe serve}; {@link ClusterNode} turns it into config.
 *
 * @param port the Artery (cluster) port; 0 picks a free one (only sensible without seeds to reach)
 * @param seedNodes the nodes to join; empty: this node forms a new cluster on its own
 * @param grpcHost where the gateway's gRPC server binds (gateway role only)
 * @param grpcPort the gateway's gRPC port; 0 picks a free one
 * @param overrides {@code --conf key=value} settings, applied over everything else
 * @param metricsPort the {@code /metrics} port ({@code --metrics-port}); 0 picks a free one, -1
 *     serves none, null leaves it to the config ({@code moe.metrics.port})
 */
public record NodeSpec(
    Set<Role> roles,
    String host,
    int port,
    List<HostPort> seedNodes,
    Path modelDir,
    String grpcHost,
    int grpcPort,
    Map<String, String> overrides,
    Integer metricsPort) {

  /** A node whose metrics port comes from the config. */
  public NodeSpec(Set<Role> roles, String host, int port, List<HostPort> seedNodes, Path modelDir, String grpcHost,
      int grpcPort, Map<String, String> overrides) {
    this(roles, host, port, seedNodes, modelDir, grpcHost, grpcPort, overrides, null);
  }

  public NodeSpec {
    Objects.requireNonNull(modelDir, "modelDir");
    roles = Set.copyOf(roles);
    seedNodes = List.copyOf(seedNodes);
    overrides = Map.copyOf(overrides);
    if (roles.isEmpty()) {
      throw new IllegalArgumentException("--roles: a node needs at least one role");
    }
    if (host == null || host.isBlank()) {
      throw new IllegalArgumentException("--host is empty");
    }
    if (port < 0 || port > 65535) {
      throw new IllegalArgumentException("--port must be in [0, 65535], got " + port);
    }
    if (grpcPort < 0 || grpcPort > 65535) {
      throw new IllegalArgumentException("--grpc-port must be in [0, 65535], got " + grpcPort);
    }
    if (overrides.keySet().stream().anyMatch(k -> k.trim().equals(GRPC_PORT_KEY))) {
      // The node binds the port of --grpc-port; a --conf for it would be silently ignored.
      throw new IllegalArgumentException("--conf " + GRPC_PORT_KEY + ": a node's gRPC port is set with --grpc-port");
    }
    if (metricsPort != null && (metricsPort < -1 || metricsPort > 65535)) {
      throw new IllegalArgumentException("--metrics-port must be in [-1, 65535] (-1: none), got " + metricsPort);
    }
  }

  /** The gateway's port key, which the {@code moe} commands set from {@code --grpc-port} only. */
  static final String GRPC_PORT_KEY = "moe.gateway.grpc-port";

  public boolean has(Role role) {
    return roles.contains(role);
  }
}

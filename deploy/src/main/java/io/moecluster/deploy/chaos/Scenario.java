package io.moecluster.deploy.chaos;

import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.stream.Collectors;

/**
 * A fault scenario of {@code moe chaos}: which node kind it hits and how. Expert scenarios run on
 * a gateway+router JVM and at least three expert JVMs (so that with {@code replicas = 2} a spare
 * node is left); kill-router runs on a gateway-only JVM, two router JVMs and the expert JVMs.
 */
public enum Scenario {
  /** SIGKILL one expert node mid-generation; it stays dead. */
  KILL_EXPERT(Fault.Kind.KILL, Topology.Target.EXPERT),
  /** SIGKILL one of the two routers mid-generation; the gateway must resume its streams elsewhere. */
  KILL_ROUTER(Fault.Kind.KILL, Topology.Target.ROUTER),
  /** SIGKILL one expert node, start the same node again at once and wait until it joined. */
  RESTART_EXPERT(Fault.Kind.RESTART, Topology.Target.EXPERT),
  /** SIGSTOP one expert node, SIGCONT it after the pause: a node that is slow, not dead. */
  PAUSE_EXPERT(Fault.Kind.PAUSE, Topology.Target.EXPERT);

  private final Fault.Kind fault;
  private final Topology.Target target;

  Scenario(Fault.Kind fault, Topology.Target target) {
    this.fault = fault;
    this.target = target;
  }

  public Fault.Kind fault() {
    return fault;
  }

  public Topology.Target target() {
    return target;
  }

  /** The command-line name, e.g. {@code kill-expert}. */
  public String cliName() {
    return name().toLowerCase(Locale.ROOT).replace('_', '-');
  }

  /** {@code kill-expert} or ... or {@code all} (every scenario, in declaration order). */
  public static List<Scenario> parse(String text) {
    String name = text == null ? "" : text.trim().toLowerCase(Locale.ROOT);
    if (name.equals("all")) {
      return List.of(values());
    }
    for (Scenario s : values()) {
      if (s.cliName().equals(name)) {
        return List.of(s);
      }
    }
    throw new IllegalArgumentException("--scenario: unknown scenario '" + text + "'; the scenarios are "
        + Arrays.stream(values()).map(Scenario::cliName).collect(Collectors.joining(", ")) + ", all");
  }
}

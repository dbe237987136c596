package io.moecluster.deploy.chaos;

import java.util.ArrayList;
import java.util.List;

/**
 * The JVMs a scenario runs on, by name and roles. Node 0 is the seed and carries the gateway; it
 * is never a fault's target.
 *
 * <ul>
 *   <li>expert scenarios: {@code gateway} (gateway, router) and {@code expert-1..N}, N >= 3 so
 *       that with two replicas of every expert one node is left to take the dead one's place;
 *   <li>router scenarios: {@code gateway} (gateway only), {@code router-1}, {@code router-2} and
 *       {@code expert-1..N}, N >= 1: the gateway must outlive the router it loses.
 * </ul>
 */
public record Topology(Target target, List<Node> nodes) {
  /** The kind of node the faults hit. */
  public enum Target {
    EXPERT,
    ROUTER
  }

  /** One JVM: its name and its {@code --roles}. */
  public record Node(String name, String roles) {}

  /** Least expert JVMs for an expert scenario. */
  public static final int MIN_EXPERT_NODES_FOR_EXPERT_FAULTS = 3;

  public Topology {
    nodes = List.copyOf(nodes);
  }

  /** The topology of {@code target} faults with {@code expertNodes} expert JVMs. */
  public static Topology of(Target target, int expertNodes) {
    int least = target == Target.EXPERT ? MIN_EXPERT_NODES_FOR_EXPERT_FAULTS : 1;
    if (expertNodes < least) {
      throw new IllegalArgumentException("--expert-nodes: " + (target == Target.EXPERT
          ? "expert faults need at least " + least + " expert JVMs (one to lose and, with --replicas 2, a spare)"
          : "router faults need at least one expert JVM") + ", got " + expertNodes);
    }
    List<Node> nodes = new ArrayList<>();
    if (target == Target.EXPERT) {
      nodes.add(new Node("gateway", "gateway,router"));
    } else {
      nodes.add(new Node("gateway", "gateway"));
      nodes.add(new Node("router-1", "router"));
      nodes.add(new Node("router-2", "router"));
    }
    for (int i = 1; i <= expertNodes; i++) {
      nodes.add(new Node("expert-" + i, "expert"));
    }
    return new Topology(target, nodes);
  }

  public int expertNodes() {
    return (int) nodes.stream().filter(n -> n.roles().contains("expert")).count();
  }

  public int routerNodes() {
    return (int) nodes.stream().filter(n -> n.roles().contains("router")).count();
  }

  /** The node a scenario's fault hits: the first expert or the first router that is not the gateway. */
  public String victim() {
    return target == Target.EXPERT ? "expert-1" : "router-1";
  }

  /** One line: {@code gateway(gateway,router) expert-1 expert-2 expert-3}. */
  public String describe() {
    StringBuilder b = new StringBuilder();
    for (Node n : nodes) {
      if (!b.isEmpty()) {
        b.append(' ');
      }
      b.append(n.name()).append('(').append(n.roles()).append(')');
    }
    return b.toString();
  }
}

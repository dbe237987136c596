package io.moecluster.deploy.cluster;

import io.moecluster.proto.v1.ExpertPlacement;
import io.moecluster.proto.v1.ModelInfo;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.Function;

/** Where the experts of a model are, grouped by cluster node, from {@code GetModelInfo}. */
public final class Placement {
  private Placement() {}

  /** The placement entries by node address ({@code pekko://moe@host:port}), nodes sorted. */
  public static Map<String, List<ExpertPlacement>> byNode(ModelInfo info) {
    Map<String, List<ExpertPlacement>> out = new TreeMap<>();
    for (ExpertPlacement p : info.getPlacementList()) {
      out.computeIfAbsent(p.getNode(), n -> new ArrayList<>()).add(p);
    }
    return out;
  }

  /** {@code pekko://moe@127.0.0.1:25521} becomes {@code 127.0.0.1:25521}. */
  public static String hostPort(String nodeAddress) {
    int at = nodeAddress.indexOf('@');
    return at >= 0 ? nodeAddress.substring(at + 1) : nodeAddress;
  }

  /**
   * One line per node: {@code expert node 127.0.0.1:25521 (expert-1): 16 experts (layer/expert
   * 0/0 0/3 ...)}. {@code names} labels nodes (may return null).
   */
  public static List<String> describe(ModelInfo info, Function<String, String> names) {
    List<String> lines = new ArrayList<>();
    List<Map.Entry<String, List<ExpertPlacement>>> nodes = new ArrayList<>(byNode(info).entrySet());
    // Named nodes in name order (expert-1, expert-2, ...), then the others by address.
    nodes.sort(java.util.Comparator.comparing(e -> {
      String name = names.apply(e.getKey());
      return name != null ? "0" + name : "1" + e.getKey();
    }));
    for (var e : nodes) {
      StringBuilder line = new StringBuilder("expert node ").append(hostPort(e.getKey()));
      String name = names.apply(e.getKey());
      if (name != null) {
        line.append(" (").append(name).append(')');
      }
      List<ExpertPlacement> experts = e.getValue();
      long notLoaded = experts.stream().filter(p -> !p.getLoaded()).count();
      line.append(": ").append(experts.size()).append(experts.size() == 1 ? " expert" : " experts");
      if (notLoaded > 0) {
        line.append(", ").append(notLoaded).append(" loading");
      }
      line.append(" (layer/expert");
      for (ExpertPlacement p : experts) {
        line.append(' ').append(p.getLayer()).append('/').append(p.getExpert());
        if (p.getReplica() > 0) {
          line.append('#').append(p.getReplica());
        }
      }
      lines.add(line.append(')').toString());
    }
    if (lines.isEmpty()) {
      lines.add("experts: not placed yet");
    }
    return lines;
  }
}

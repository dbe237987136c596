package io.moecluster.deploy.cluster;

import java.util.ArrayList;
import java.util.List;

/** A {@code host:port} pair as given on the command line (seed nodes, gRPC targets). */
public record HostPort(String host, int port) {

  public HostPort {
    if (host == null || host.isBlank()) {
      throw new IllegalArgumentException("host is empty");
    }
    if (port < 0 || port > 65535) {
      throw new IllegalArgumentException("port must be in [0, 65535], got " + port);
    }
  }

  /**
   * Parses {@code host:port} ({@code [v6]:port} for IPv6 literals); {@code what} names the flag in
   * the error message.
   */
  public static HostPort parse(String text, String what) {
    String s = text == null ? "" : text.trim();
    int colon = s.lastIndexOf(':');
    if (colon <= 0 || colon == s.length() - 1) {
      throw new IllegalArgumentException(what + ": expected host:port, got '" + s + "'");
    }
    String host = s.substring(0, colon);
    if (host.startsWith("[") && host.endsWith("]")) {
      host = host.substring(1, host.length() - 1);
    } else if (host.contains(":")) {
      throw new IllegalArgumentException(what + ": write IPv6 hosts in brackets, [::1]:25520; got '" + s + "'");
    }
    int port;
    try {
      port = Integer.parseInt(s.substring(colon + 1));
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException(what + ": port of '" + s + "' is not a number");
    }
    if (port < 1 || port > 65535) {
      throw new IllegalArgumentException(what + ": port of '" + s + "' must be in [1, 65535]");
    }
    if (host.isBlank()) {
      throw new IllegalArgumentException(what + ": host of '" + s + "' is empty");
    }
    return new HostPort(host, port);
  }

  /** Parses a comma-separated list of {@code host:port}; at least one. */
  public static List<HostPort> parseList(String text, String what) {
    if (text == null || text.isBlank()) {
      throw new IllegalArgumentException(what + " is empty; give host:port[,host:port...]");
    }
    List<HostPort> out = new ArrayList<>();
    for (String part : text.split(",", -1)) {
      out.add(parse(part, what));
    }
    return List.copyOf(out);
  }

  /** For URIs and gRPC targets: brackets around IPv6 literals. */
  @Override
  public String toString() {
    return (host.contains(":") ? "[" + host + "]" : host) + ":" + port;
  }
}

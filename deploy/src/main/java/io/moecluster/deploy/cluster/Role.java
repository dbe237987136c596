package io.moecluster.deploy.cluster;

import java.util.EnumSet;
import java.util.Locale;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * A role a cluster node can carry; its name is the Pekko cluster role. Within one JVM the roles
 * start in declaration order (expert, router, gateway) and stop in the reverse order.
 */
public enum Role {
  EXPERT,
  ROUTER,
  GATEWAY;

  /** The Pekko cluster role name, e.g. {@code "expert"}. */
  public String clusterRole() {
    return name().toLowerCase(Locale.ROOT);
  }

  /** Parses {@code "expert,router"}; an unknown or missing role is an IllegalArgumentException. */
  public static Set<Role> parseList(String text) {
    if (text == null || text.isBlank()) {
      throw new IllegalArgumentException("--roles is empty; give one or more of " + names());
    }
    EnumSet<Role> roles = EnumSet.noneOf(Role.class);
    for (String part : text.split(",", -1)) {
      String name = part.trim().toLowerCase(Locale.ROOT);
      Role role = null;
      for (Role r : values()) {
        if (r.clusterRole().equals(name)) {
          role = r;
        }
      }
      if (role == null) {
        throw new IllegalArgumentException(
            "--roles: unknown role '" + part.trim() + "'; the roles are " + names() + " (comma-separated)");
      }
      roles.add(role);
    }
    return roles;
  }

  private static String names() {
    return EnumSet.allOf(Role.class).stream().map(Role::clusterRole).collect(Collectors.joining(", "));
  }
}

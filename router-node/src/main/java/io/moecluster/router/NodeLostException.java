package io.moecluster.router;

/** An attempt ended because its node is gone: {@code removed} means its entities are moving. */
final class NodeLostException extends RuntimeException {
  final boolean removed;

  NodeLostException(String node, boolean removed) {
    super("expert node " + node + (removed ? " was removed from the cluster" : " is unreachable"), null, false, false);
    this.removed = removed;
  }
}

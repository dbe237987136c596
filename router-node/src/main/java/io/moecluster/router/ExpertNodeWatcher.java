package io.moecluster.router;

import java.util.function.Consumer;
import org.apache.pekko.actor.NoSerializationVerificationNeeded;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.Terminated;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.cluster.ClusterEvent;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Subscribe;
import org.apache.pekko.cluster.typed.Unsubscribe;

/**
 * The actor that passes on what the cluster knows of the expert entities and their nodes: an
 * entity sent to straight has stopped (to {@link DirectPaths}), a member became unreachable, came
 * back or was removed (to {@link ShardedExperts}, once told {@link Start}). Local only.
 */
final class ExpertNodeWatcher {
  private ExpertNodeWatcher() {}

  /** The watcher's messages: local only. */
  sealed interface Command extends NoSerializationVerificationNeeded {}

  /** Watch an entity that requests go to directly. */
  record Watch(ActorRef<?> ref) implements Command {}

  /**
   * A member ({@code pekko://moe@host:port}) became unreachable, or its cluster port refused a
   * connection (a crashed process, {@code why} says which), or it was removed (downed first).
   */
  record Lost(String node, boolean removed, String why) implements Command {}

  /** A member ({@code pekko://moe@host:port}) is reachable again. */
  record Reachable(String node) implements Command {}

  /** The executor is built: the watcher subscribes to the cluster's member events. */
  record Start() implements Command {}

  /** The executor is closed: the watcher unsubscribes and stops. */
  record Stop() implements Command {}

  /**
   * @param onStopped told of each watched entity that stopped
   * @param onLost told of each member lost (unreachable, refusing connections or removed)
   * @param onReachable told of each member reachable again
   */
  static Behavior<Command> create(Consumer<ActorRef<?>> onStopped, Consumer<Lost> onLost,
      Consumer<String> onReachable) {
    return Behaviors.setup(ctx -> {
      var subscriptions = Cluster.get(ctx.getSystem()).subscriptions();
      ActorRef<ClusterEvent.UnreachableMember> unreachable = ctx.messageAdapter(ClusterEvent.UnreachableMember.class,
          u -> new Lost(u.member().address().toString(), false, "unreachable"));
      ActorRef<ClusterEvent.ReachableMember> reachable = ctx.messageAdapter(ClusterEvent.ReachableMember.class,
          r -> new Reachable(r.member().address().toString()));
      ActorRef<ClusterEvent.MemberRemoved> removed = ctx.messageAdapter(ClusterEvent.MemberRemoved.class,
          r -> new Lost(r.member().address().toString(), true, "removed"));
      return Behaviors.receive(Command.class)
          .onMessage(Start.class, s -> {
            subscriptions.tell(Subscribe.create(unreachable, ClusterEvent.UnreachableMember.class));
            subscriptions.tell(Subscribe.create(reachable, ClusterEvent.ReachableMember.class));
            subscriptions.tell(Subscribe.create(removed, ClusterEvent.MemberRemoved.class));
            return Behaviors.same();
          })
          .onMessage(Watch.class, w -> {
            ctx.watch(w.ref());
            return Behaviors.same();
          })
          .onMessage(Lost.class, u -> {
            onLost.accept(u);
            return Behaviors.same();
          })
          .onMessage(Reachable.class, r -> {
            onReachable.accept(r.node());
            return Behaviors.same();
          })
          .onMessage(Stop.class, s -> {
            subscriptions.tell(new Unsubscribe<>(unreachable));
            subscriptions.tell(new Unsubscribe<>(reachable));
            subscriptions.tell(new Unsubscribe<>(removed));
            return Behaviors.stopped();
          })
          .onSignal(Terminated.class, t -> {
            onStopped.accept(t.getRef());
            return Behaviors.same();
          })
          .build();
    });
  }
}

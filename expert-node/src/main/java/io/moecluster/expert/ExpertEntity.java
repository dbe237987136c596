package io.moecluster.expert;

import io.moecluster.core.model.ExpertStore;
import io.moecluster.core.model.ExpertWeights;
import io.moecluster.proto.cluster.v1.ComputeExperts;
import io.moecluster.proto.cluster.v1.ExpertCommand;
import io.moecluster.proto.cluster.v1.ExpertReply;
import io.moecluster.proto.cluster.v1.Locate;
import io.moecluster.proto.cluster.v1.Located;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.cluster.sharding.typed.javadsl.EntityTypeKey;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One routed expert of one MoE layer as a sharded actor (entity id {@code "<layer>/<expert>"}, or
 * {@code "<layer>/<expert>#<replica>"} with {@code moe.expert.replicas = 2}).
 * Its {@link ExpertComputation} checks requests against the views of its three weight matrices in
 * the node's mapped checkpoint and computes with weights from the node's {@link ExpertWeightCache}
 * (warm copies, or the mapped bytes when they cannot be warm). A {@code ComputeExperts} reaches it
 * through Artery as a message, or over the node's data channel ({@link ExpertDataServer}), which
 * finds the computation in the node's {@link EntityDirectory}: the entity registers there while it
 * lives on this node, so the data channel only serves entities that sharding placed here.
 * {@code Prefetch} asks the cache to load; {@code Locate} makes the weights ready once and answers
 * with the entity's ref and the node's data endpoint.
 */
public final class ExpertEntity extends AbstractBehavior<ExpertCommand> {

  /** The sharded entity type; its message type is the wire's {@link ExpertCommand}. */
  public static final EntityTypeKey<ExpertCommand> TYPE_KEY =
      EntityTypeKey.create(ExpertCommand.class, "expert");

  private static final Logger log = LoggerFactory.getLogger(ExpertEntity.class);

  /** What every entity of a node shares: the weights and their cache, the backend and where to compute. */
  record NodeContext(ExpertStore store, ExpertWeightCache cache, ExpertBackend backend, Executor compute,
      String nodeAddress, EntityDirectory directory, String dataEndpoint) {

    /** A node without a data channel. */
    NodeContext(ExpertStore store, ExpertWeightCache cache, ExpertBackend backend, Executor compute,
        String nodeAddress) {
      this(store, cache, backend, compute, nodeAddress, new EntityDirectory(), "");
    }
  }

  /** A parsed entity id: the expert and which of its replicas (0 when it has one). */
  public record Id(int layer, int expert, int replica) {
    public Id(int layer, int expert) {
      this(layer, expert, 0);
    }

    @Override
    public String toString() {
      return replica == 0 ? entityId(layer, expert) : entityId(layer, expert, replica, replica + 1);
    }
  }

  /** The entity id of (layer, expert) without replicas: {@code "<layer>/<expert>"}. */
  public static String entityId(int layer, int expert) {
    return layer + "/" + expert;
  }

  /**
   * The entity id of one replica of (layer, expert) when every expert has {@code replicas}
   * entities: {@code "<layer>/<expert>"} for 1 (the ids of a cluster without replicas stay as
   * they were), {@code "<layer>/<expert>#<replica>"} otherwise.
   */
  public static String entityId(int layer, int expert, int replica, int replicas) {
    return replicas <= 1 ? entityId(layer, expert) : layer + "/" + expert + "#" + replica;
  }

  /** Parses {@code "<layer>/<expert>"} or {@code "<layer>/<expert>#<replica>"}; IllegalArgumentException on anything else. */
  public static Id parseEntityId(String id) {
    int slash = id.indexOf('/');
    int hash = id.indexOf('#');
    int end = hash < 0 ? id.length() : hash;
    if (slash <= 0 || slash >= end - 1 || hash == id.length() - 1) {
      throw badId(id);
    }
    try {
      int layer = Integer.parseInt(id, 0, slash, 10);
      int expert = Integer.parseInt(id, slash + 1, end, 10);
      int replica = hash < 0 ? 0 : Integer.parseInt(id, hash + 1, id.length(), 10);
      if (layer < 0 || expert < 0 || replica < 0) {
        throw new NumberFormatException("negative");
      }
      return new Id(layer, expert, replica);
    } catch (NumberFormatException e) {
      throw badId(id);
    }
  }

  private static IllegalArgumentException badId(String id) {
    return new IllegalArgumentException(
        "expert entity id must be \"<layer>/<expert>\" or \"<layer>/<expert>#<replica>\", got \"" + id + "\"");
  }

  static Behavior<ExpertCommand> create(NodeContext node, String entityId) {
    return Behaviors.setup(ctx -> new ExpertEntity(ctx, node, entityId));
  }

  private final NodeContext node;
  private final ActorRefResolver resolver;
  private final String entityId;
  private final Id id; // null when the entity id is malformed
  private ExpertWeights weights; // views into the mapped checkpoint, looked up on first use
  private String weightsError; // why the weights cannot be found, once known
  private CompletableFuture<Void> loaded; // ready to serve (Locate); null until the first Locate
  private final ExpertComputation computation; // null without weights (weightsError says why)

  private ExpertEntity(ActorContext<ExpertCommand> ctx, NodeContext node, String entityId) {
    super(ctx);
    this.node = node;
    this.resolver = ActorRefResolver.get(ctx.getSystem());
    this.entityId = entityId;
    Id parsed = null;
    try {
      parsed = parseEntityId(entityId);
    } catch (IllegalArgumentException e) {
      weightsError = e.getMessage();
    }
    this.id = parsed;
    this.computation = weights() == null ? null : new ExpertComputation(node, entityId, parsed, weights);
    if (computation != null) {
      node.directory().register(entityId, computation); // reachable over the node's data channel
    }
  }

  @Override
  public Receive<ExpertCommand> createReceive() {
    return newReceiveBuilder()
        .onMessage(ExpertCommand.class, this::onCommand)
        .onSignal(PostStop.class, stop -> {
          if (computation != null) {
            node.directory().unregister(entityId, computation);
          }
          return this;
        })
        .build();
  }

  private Behavior<ExpertCommand> onCommand(ExpertCommand cmd) {
    switch (cmd.getCommandCase()) {
      case COMPUTE -> onCompute(cmd.getCompute());
      case LOCATE -> onLocate(cmd.getLocate());
      case PREFETCH -> {
        if (computation != null) {
          computation.prefetch();
        }
      }
      case COMMAND_NOT_SET -> getContext().getLog().warn("Expert {}: empty ExpertCommand ignored", entityId);
    }
    return this;
  }

  private void onCompute(ComputeExperts req) {
    ActorRef<ExpertReply> replyTo;
    try {
      replyTo = resolver.resolveActorRef(req.getReplyTo());
    } catch (RuntimeException e) {
      getContext().getLog().warn("Expert {}: cannot answer step {}: bad reply_to '{}'", entityId,
          req.getStepId(), req.getReplyTo());
      return;
    }
    if (computation == null) {
      // This node could not open the weights; another replica's node may have.
      replyTo.tell(ExpertComputation.replyTo(req, node.nodeAddress()).setNodeFault(true).setError(weightsError)
          .build());
      return;
    }
    computation.run(req, replyTo::tell);
  }

  private void onLocate(Locate req) {
    ActorRef<Located> replyTo;
    try {
      replyTo = resolver.resolveActorRef(req.getReplyTo());
    } catch (RuntimeException e) {
      getContext().getLog().warn("Expert {}: cannot answer Locate: bad reply_to '{}'", entityId, req.getReplyTo());
      return;
    }
    Located.Builder located = Located.newBuilder().setNode(node.nodeAddress())
        .setEntity(resolver.toSerializationFormat(getContext().getSelf()))
        .setDataEndpoint(computation == null ? "" : node.dataEndpoint());
    if (id != null) {
      located.setLayer(id.layer()).setExpert(id.expert()).setReplica(id.replica());
    }
    CompletableFuture<Void> load = ensureLoaded();
    if (load == null) {
      replyTo.tell(located.setLoaded(false).build());
      return;
    }
    load.whenComplete((v, err) -> replyTo.tell(located.setLoaded(err == null).build()));
  }

  /** Makes the weights ready through the cache (once); null when there are none. */
  private CompletableFuture<Void> ensureLoaded() {
    if (loaded == null && weights() != null) {
      loaded = node.cache().warmUp(id.layer(), id.expert());
      loaded.whenComplete((v, err) -> {
        if (err != null) {
          log.warn("Expert {}: loading weights failed", entityId, err);
        }
      });
    }
    return loaded;
  }

  private ExpertWeights weights() {
    if (weights == null && weightsError == null) {
      try {
        weights = node.store().expert(id.layer(), id.expert());
      } catch (RuntimeException e) {
        weightsError = "expert " + entityId + " has no weights in this checkpoint: " + e.getMessage();
        getContext().getLog().warn("{}", weightsError);
      }
    }
    return weights;
  }
}

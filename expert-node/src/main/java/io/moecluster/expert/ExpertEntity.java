package io.moecluster.expert;

import io.moecluster.core.model.ExpertStore;
import io.moecluster.core.model.ExpertWeights;
import io.moecluster.proto.cluster.v1.ComputeExperts;
import io.moecluster.proto.cluster.v1.ExpertCommand;
import io.moecluster.proto.cluster.v1.ExpertReply;
import io.moecluster.proto.cluster.v1.Locate;
import io.moecluster.proto.cluster.v1.Located;
import io.moecluster.proto.codec.ActivationCodec;
import io.prometheus.metrics.core.datapoints.CounterDataPoint;
import io.prometheus.metrics.core.datapoints.DistributionDataPoint;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.actor.typed.Behavior;
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
 * It checks requests against the views of its three weight matrices in the node's mapped
 * checkpoint; the weights it computes with come from the node's {@link ExpertWeightCache} (warm
 * copies, or the mapped bytes when they cannot be warm). The actor only dispatches: loads run on
 * the cache's loader, the FFN on the node's compute executor, which answers the requester
 * directly. {@code Prefetch} asks the cache to load; {@code Locate} makes the weights ready once.
 */
public final class ExpertEntity extends AbstractBehavior<ExpertCommand> {

  /** The sharded entity type; its message type is the wire's {@link ExpertCommand}. */
  public static final EntityTypeKey<ExpertCommand> TYPE_KEY =
      EntityTypeKey.create(ExpertCommand.class, "expert");

  private static final Logger log = LoggerFactory.getLogger(ExpertEntity.class);

  /** What every entity of a node shares: the weights and their cache, the backend and where to compute. */
  record NodeContext(ExpertStore store, ExpertWeightCache cache, ExpertBackend backend, Executor compute,
      String nodeAddress) {}

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
  private final DistributionDataPoint computeSeconds; // null when the entity id is malformed
  private final CounterDataPoint tokens;

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
    this.computeSeconds = parsed == null ? null
        : ExpertMetrics.computeSeconds().labelValues(node.nodeAddress(), Integer.toString(parsed.layer()));
    this.tokens = parsed == null ? null
        : ExpertMetrics.tokens().labelValues(node.nodeAddress(), Integer.toString(parsed.layer()),
            Integer.toString(parsed.expert()));
  }

  @Override
  public Receive<ExpertCommand> createReceive() {
    return newReceiveBuilder().onMessage(ExpertCommand.class, this::onCommand).build();
  }

  private Behavior<ExpertCommand> onCommand(ExpertCommand cmd) {
    switch (cmd.getCommandCase()) {
      case COMPUTE -> onCompute(cmd.getCompute());
      case LOCATE -> onLocate(cmd.getLocate());
      case PREFETCH -> {
        if (weights() != null) {
          node.cache().prefetch(id.layer(), id.expert());
          node.backend().prefetch(id.layer(), id.expert(), weights);
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
    ExpertReply.Builder reply = ExpertReply.newBuilder()
        .setStepId(req.getStepId())
        .setChunk(req.getChunk())
        .setLayer(req.getLayer())
        .setExpert(req.getExpert())
        .setNode(node.nodeAddress());
    String problem = check(req);
    if (problem != null) {
      replyTo.tell(reply.setError(problem).build());
      return;
    }
    int rows = req.getInput().getRows();
    int hidden = req.getInput().getHidden();
    // Weights from the cache: warm, or (a run-cold miss) the mapped bytes at once. Ready weights:
    // the FFN runs right here, on the entity dispatcher's thread (no hand-off); a miss that waits
    // for its load (on-miss = wait-for-load) runs on the compute executor once the load completes.
    CompletableFuture<ExpertWeightCache.Lease> acquired = node.cache().acquire(id.layer(), id.expert());
    if (acquired.isDone() && !acquired.isCompletedExceptionally()) {
      compute(acquired.join(), req, reply, replyTo, rows, hidden);
      return;
    }
    acquired.whenComplete((lease, err) -> {
      if (err != null) {
        Throwable cause = err instanceof java.util.concurrent.CompletionException && err.getCause() != null
            ? err.getCause() : err;
        replyTo.tell(reply.setError(cause instanceof IllegalStateException
            ? "expert node " + node.nodeAddress() + " is shutting down"
            : "expert " + entityId + " has no weights: " + cause.getMessage()).build());
        return;
      }
      try {
        node.compute().execute(() -> compute(lease, req, reply, replyTo, rows, hidden));
      } catch (RejectedExecutionException e) {
        lease.close();
        replyTo.tell(reply.setError("expert node " + node.nodeAddress() + " is shutting down").build());
      }
    });
  }

  /**
   * Runs the FFN on the leased weights through the node's backend and answers the requester;
   * closes the lease once the backend is done with the weights. The CPU backend computes right
   * here; a GPU backend answers from its own compute thread.
   */
  private void compute(ExpertWeightCache.Lease lease, ComputeExperts req, ExpertReply.Builder reply,
      ActorRef<ExpertReply> replyTo, int rows, int hidden) {
    float[] x;
    try {
      x = ActivationCodec.decode(req.getInput()); // [rows, hidden]
    } catch (RuntimeException e) {
      lease.close();
      replyTo.tell(reply.setError("expert " + entityId + " failed: " + e).build());
      return;
    }
    long start = System.nanoTime();
    CompletableFuture<float[]> result;
    try {
      result = node.backend().forward(id.layer(), id.expert(), lease.weights(), x, rows); // [rows, hidden]
    } catch (RuntimeException e) {
      result = CompletableFuture.failedFuture(e);
    }
    result.whenComplete((out, err) -> {
      try (lease) {
        if (err != null) {
          Throwable cause = err instanceof java.util.concurrent.CompletionException && err.getCause() != null
              ? err.getCause() : err;
          replyTo.tell(reply.setError("expert " + entityId + " failed: " + cause).build());
          return;
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        computeSeconds.observe(seconds);
        tokens.inc(rows);
        replyTo.tell(reply.setOutput(ActivationCodec.encode(out, rows, hidden)).setComputeSeconds(seconds).build());
      } catch (RuntimeException e) {
        replyTo.tell(reply.setError("expert " + entityId + " failed: " + e).build());
      }
    });
  }

  /** Why the request cannot run, or null when it can. */
  private String check(ComputeExperts req) {
    if (id != null && (req.getLayer() != id.layer() || req.getExpert() != id.expert())) {
      return "request for expert " + req.getLayer() + "/" + req.getExpert() + " reached entity " + entityId;
    }
    if (weights() == null) {
      return weightsError;
    }
    int hidden = weights.hiddenSize();
    var in = req.getInput();
    if (in.getRows() == 0) {
      return "expert " + entityId + ": input has no rows";
    }
    if (in.getHidden() != hidden) {
      return "expert " + entityId + ": input rows have " + in.getHidden() + " elements, the model's hidden size is " + hidden;
    }
    int width = switch (in.getDtype()) {
      case F32 -> Float.BYTES;
      case BF16 -> 2;
      default -> 0;
    };
    if (width == 0) {
      return "expert " + entityId + ": unknown activation dtype " + in.getDtypeValue();
    }
    long expected = (long) in.getRows() * in.getHidden() * width;
    if (expected != in.getData().size()) {
      return "expert " + entityId + ": input of " + in.getRows() + " x " + in.getHidden() + " " + in.getDtype()
          + " needs " + expected + " bytes, got " + in.getData().size();
    }
    return null;
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
        .setEntity(resolver.toSerializationFormat(getContext().getSelf()));
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

package io.moecluster.router;

import io.moecluster.core.kernel.KernelWarmUp;
import io.moecluster.core.kernel.KernelsFactory;
import io.moecluster.core.kernel.VectorKernels;
import io.moecluster.core.model.MoeModel;
import io.moecluster.core.model.prefetch.Prefetcher;
import io.moecluster.core.tokenizer.Tokenizer;
import io.moecluster.expert.ExpertSharding;
import io.moecluster.proto.cluster.v1.RouterCommand;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.cluster.typed.Cluster;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The router role of a cluster node: it maps the model (the router only reads the dense weights)
 * and its tokenizer, and owns the {@link Engine} loop, the {@link ShardedExperts} executor behind
 * it, the gate-lookahead {@link Prefetcher} (when {@code moe.router.prefetch.enabled}), the
 * {@link ExpertPlacement} tracker and the {@link RouterActor} that gateways talk to. On a node
 * that is also an expert node, start the {@code ExpertNode} first.
 */
public final class RouterNode implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(RouterNode.class);

  /**
   * The name of the router actor under {@code /system}. A node's config routes messages to it over
   * Artery's large-message lane ({@code pekko.remote.artery.large-message-destinations}), which
   * matches the path: keep the two in step.
   */
  public static final String ROUTER_NAME = "moe-router";

  private final ActorSystem<?> system;
  private final MoeModel model;
  private final VectorKernels kernels;
  private final Engine engine;
  private final ShardedExperts experts;
  private final AtomicReference<ExpertPlacement.Snapshot> placement;
  private final ActorRef<ExpertPlacement.Command> placementActor;
  private final ActorRef<RouterCommand> router;

  private RouterNode(ActorSystem<?> system, MoeModel model, VectorKernels kernels, Engine engine,
      ShardedExperts experts, AtomicReference<ExpertPlacement.Snapshot> placement,
      ActorRef<ExpertPlacement.Command> placementActor,
      ActorRef<RouterCommand> router) {
    this.system = system;
    this.model = model;
    this.kernels = kernels;
    this.engine = engine;
    this.experts = experts;
    this.placement = placement;
    this.placementActor = placementActor;
    this.router = router;
  }

  /** Loads the model of {@code settings} and starts serving on {@code system}. */
  public static RouterNode start(ActorSystem<?> system, RouterSettings settings) {
    Tokenizer tokenizer = Tokenizer.load(settings.modelDir());
    VectorKernels kernels = KernelsFactory.create(settings.computeThreads());
    MoeModel model = null;
    try {
      model = MoeModel.load(settings.modelDir(), kernels, settings.weights());
      if (tokenizer.vocabSize() > model.config().vocabSize()) {
        throw new IllegalArgumentException(settings.modelDir() + ": the tokenizer has " + tokenizer.vocabSize()
            + " tokens but the model's vocab_size is " + model.config().vocabSize());
      }
      if (settings.kernelWarmUp()) {
        // Before the router registers: its first steps would otherwise run interpreted kernels.
        KernelWarmUp.Result warm = KernelWarmUp.run(kernels, model.tensors().dtypes());
        log.info("Router node: kernels warmed up in {} ms ({} rounds)", warm.took().toMillis(), warm.rounds());
      }
      var region = ExpertSharding.initProxy(system);

      String address = Cluster.get(system).selfMember().address().toString();
      Prefetcher prefetcher = settings.prefetchEnabled()
          ? new Prefetcher(model, settings.prefetchDepth(), settings.prefetchExtraExperts(),
              RouterMetrics.prefetchListener(address, model.config().numLayers()))
          : null;
      AtomicReference<ExpertPlacement.Snapshot> placement = new AtomicReference<>(
          new ExpertPlacement.Snapshot(false, java.util.List.of(), "locating the experts has not started yet"));
      ShardedExperts experts = new ShardedExperts(system, settings.expertTimeout(),
          settings.maxExpertMessageBytes(), placement::get, settings.failover(), settings.dataChannel());
      Engine engine = new Engine(model, tokenizer, experts, settings.maxRunningSequences(), settings.maxWaiting(),
          prefetcher, address);
      ActorRef<ExpertPlacement.Command> placementActor = system.systemActorOf(
          ExpertPlacement.create(region, model.config().numLayers(), model.config().numExperts(),
              experts.replicas(), settings.minExpertNodes(), settings.placementRetryInterval(), placement),
          "moe-expert-placement", Props.empty());
      ActorRef<RouterCommand> router = system.systemActorOf(
          RouterActor.create(engine, placement::get), ROUTER_NAME, Props.empty());
      log.info("Router node: model {} ({} layers x {} experts), up to {} running sequences, prefetch {}",
          settings.modelDir(), model.config().numLayers(), model.config().numExperts(),
          settings.maxRunningSequences(),
          prefetcher == null ? "off" : "on (depth " + prefetcher.depth() + ")");
      return new RouterNode(system, model, kernels, engine, experts, placement, placementActor, router);
    } catch (RuntimeException e) {
      if (model != null) {
        model.close();
      }
      kernels.close();
      throw e;
    }
  }

  /** The actor gateways send {@code RouterCommand}s to (also found under RouterActor.SERVICE_KEY). */
  public ActorRef<RouterCommand> router() {
    return router;
  }

  public Engine engine() {
    return engine;
  }

  /** The router's expert client (for tests). */
  ShardedExperts experts() {
    return experts;
  }

  /** The latest view of the expert placement. */
  public ExpertPlacement.Snapshot placement() {
    return placement.get();
  }

  /** Stops the actors and the engine (active sequences fail UNAVAILABLE) and unmaps the model. */
  @Override
  public void close() {
    var classic = Adapter.toClassic(system);
    classic.stop(Adapter.toClassic(router));
    classic.stop(Adapter.toClassic(placementActor));
    engine.close();
    experts.close();
    model.close();
    kernels.close();
  }
}

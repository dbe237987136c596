package io.moecluster.expert;

import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.kernel.KernelWarmUp;
import io.moecluster.core.kernel.KernelsFactory;
import io.moecluster.core.kernel.VectorKernels;
import io.moecluster.core.model.ExpertStore;
import io.moecluster.core.safetensors.SafeTensors;
import io.moecluster.proto.cluster.v1.ExpertCommand;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.cluster.sharding.typed.ShardingEnvelope;
import org.apache.pekko.cluster.typed.Cluster;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The expert role of a cluster node: it maps the checkpoint once, owns the kernels, the
 * {@link ExpertBackend} (CPU or CUDA, {@code moe.expert.backend}), the compute executor ({@code moe-expert-compute-N}) that every {@link ExpertEntity} of the node
 * runs on, the {@link ExpertWeightCache} with its loader threads ({@code moe-expert-loader-N}), and inits Cluster Sharding for {@link ExpertEntity#TYPE_KEY} with role
 * {@value ExpertSharding#ROLE}, and serves the entities' expert data channel ({@link ExpertDataServer},
 * {@code moe.expert.data-channel}). The node must carry that role. Closing it stops the compute
 * threads and unmaps the checkpoint; close it after the actor system has left the cluster.
 */
public final class ExpertNode implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(ExpertNode.class);
  private static final AtomicInteger THREAD_IDS = new AtomicInteger();

  private final SafeTensors tensors;
  private final ModelConfig config;
  private final VectorKernels kernels;
  private final ExecutorService compute;
  private final ExecutorService loader;
  private final ExpertWeightCache cache;
  private final ExpertBackend backend;
  private final ActorRef<ShardingEnvelope<ExpertCommand>> region;
  private final String address;
  private final ExpertDataServer dataServer; // null when moe.expert.data-channel.enabled is off

  private ExpertNode(SafeTensors tensors, ModelConfig config, VectorKernels kernels, ExecutorService compute,
      ExecutorService loader, ExpertWeightCache cache, ExpertBackend backend,
      ActorRef<ShardingEnvelope<ExpertCommand>> region, String address, ExpertDataServer dataServer) {
    this.dataServer = dataServer;
    this.tensors = tensors;
    this.config = config;
    this.kernels = kernels;
    this.compute = compute;
    this.loader = loader;
    this.cache = cache;
    this.backend = backend;
    this.region = region;
    this.address = address;
  }

  /**
   * Opens the model of {@code settings} and starts hosting expert entities on {@code system}, on
   * the backend that {@code moe.expert.backend} of the system's configuration selects.
   */
  public static ExpertNode start(ActorSystem<?> system, ExpertNodeSettings settings) {
    return start(system, settings, ExpertBackendSettings.fromConfig(system.settings().config()));
  }

  /** Opens the model of {@code settings} and hosts expert entities that compute on {@code backendSettings}. */
  public static ExpertNode start(ActorSystem<?> system, ExpertNodeSettings settings,
      ExpertBackendSettings backendSettings) {
    Cluster cluster = Cluster.get(system);
    if (!cluster.selfMember().hasRole(ExpertSharding.ROLE)) {
      throw new IllegalStateException("an expert node needs the cluster role '" + ExpertSharding.ROLE
          + "' (pekko.cluster.roles); this node has " + cluster.selfMember().getRoles());
    }
    ModelConfig config = ModelConfig.load(settings.modelDir());
    SafeTensors tensors = SafeTensors.open(settings.modelDir());
    int threads = settings.effectiveComputeThreads();
    VectorKernels kernels = null;
    ExecutorService compute = null;
    ExecutorService loader = null;
    ExpertWeightCache cache = null;
    ExpertBackend backend = null;
    ExpertDataServer dataServer = null;
    try {
      kernels = KernelsFactory.create(settings.effectiveKernelThreads());
      compute = executor(threads, "moe-expert-compute-");
      loader = executor(settings.cacheLoaderThreads(), "moe-expert-loader-");
      String address = cluster.selfMember().address().toString();
      ExpertStore store = new ExpertStore(tensors, config);
      long all = ExpertWeightCache.allExpertBytes(store);
      long budget = settings.cacheBudget().resolve(all);
      cache = new ExpertWeightCache(store, budget, loader, address, settings.cacheMissPolicy(),
          settings.cacheBackgroundLoads());
      // Calls computed alone run on their own thread; a one-thread set holds no threads to close.
      VectorKernels alone = kernels.threads() == 1 ? kernels : KernelsFactory.create(1);
      backend = ExpertBackends.select(backendSettings, new CpuExpertBackend(kernels, alone), compute, address);
      if (settings.kernelWarmUp() && backend instanceof CpuExpertBackend) {
        // Before the region starts: no entity is placed here until the kernels are compiled.
        KernelWarmUp.Result warm = KernelWarmUp.run(kernels, tensors.dtypes());
        log.info("Expert node {}: kernels warmed up in {} ms ({} rounds)", address, warm.took().toMillis(),
            warm.rounds());
      }
      if (backendSettings.registerCheckpoint()) {
        backend.registerHostMemory(tensors.mappings());
      }
      EntityDirectory directory = new EntityDirectory();
      String refusal = dataChannelRefusal(system.settings().config());
      if (settings.dataChannel() && refusal != null) {
        log.info("Expert node {}: no expert data channel, requests come through Artery: {}", address, refusal);
      } else if (settings.dataChannel()) {
        dataServer = startDataServer(system, settings, directory, address);
      }
      ExpertEntity.NodeContext ctx = new ExpertEntity.NodeContext(store, cache, backend, compute, address, directory,
          dataServer == null ? "" : dataServer.endpoint());
      ActorRef<ShardingEnvelope<ExpertCommand>> region =
          ExpertSharding.initHosting(system, entity -> ExpertEntity.create(ctx, entity.getEntityId()));
      log.info("Expert node {}: model {} ({} layers x {} experts), {} compute thread(s) x {} kernel thread(s), weight cache budget"
              + " {} of {} expert bytes ({})", address, settings.modelDir(), config.numLayers(),
          config.numExperts(), threads, kernels.threads(), budget, all, settings.cacheBudget());
      return new ExpertNode(tensors, config, kernels, compute, loader, cache, backend, region, address, dataServer);
    } catch (RuntimeException e) {
      if (dataServer != null) {
        dataServer.close();
      }
      if (backend != null) {
        backend.close();
      }
      if (cache != null) {
        cache.close();
      }
      if (loader != null) {
        loader.shutdownNow();
      }
      if (compute != null) {
        compute.shutdownNow();
      }
      if (kernels != null) {
        kernels.close();
      }
      tensors.close();
      throw e;
    }
  }

  /**
   * Why this node must not serve the (plaintext) data channel although it is enabled, or null when
   * it may: with Artery on TLS ({@code tls-tcp}) the activations would otherwise leave the node
   * unencrypted and any peer could send calls without a certificate.
   */
  static String dataChannelRefusal(com.typesafe.config.Config config) {
    String transport = config.getString("pekko.remote.artery.transport");
    return "tls-tcp".equals(transport)
        ? "pekko.remote.artery.transport is tls-tcp and the data channel has no TLS" : null;
  }

  /** Binds the data channel on the node's cluster host (Artery's bind hostname, else its canonical one). */
  private static ExpertDataServer startDataServer(ActorSystem<?> system, ExpertNodeSettings settings,
      EntityDirectory directory, String address) {
    String canonical = Cluster.get(system).selfMember().address().getHost().orElse("127.0.0.1");
    String bind = system.settings().config().getString("pekko.remote.artery.bind.hostname");
    return ExpertDataServer.start(bind.isBlank() ? canonical : bind, settings.dataChannelPort(), canonical, directory,
        address);
  }

  private static ExecutorService executor(int threads, String prefix) {
    ThreadPoolExecutor pool = new ThreadPoolExecutor(threads, threads, 0L, TimeUnit.MILLISECONDS,
        new LinkedBlockingQueue<>(), r -> {
          Thread t = new Thread(r, prefix + THREAD_IDS.getAndIncrement());
          t.setDaemon(true);
          return t;
        });
    return pool;
  }

  /** The model this node serves experts of. */
  public ModelConfig config() {
    return config;
  }

  /** The local shard region of the expert entities. */
  public ActorRef<ShardingEnvelope<ExpertCommand>> region() {
    return region;
  }

  /** The node's expert weight cache. */
  public ExpertWeightCache cache() {
    return cache;
  }

  /** The backend the node's expert FFNs run on. */
  public ExpertBackend backend() {
    return backend;
  }

  /** This node's cluster address, as reported in ExpertReply.node and Located.node. */
  public String address() {
    return address;
  }

  /** "host:port" of the node's expert data channel, or empty when it serves none. */
  public String dataEndpoint() {
    return dataServer == null ? "" : dataServer.endpoint();
  }

  @Override
  public void close() {
    if (dataServer != null) {
      dataServer.close();
    }
    stop(loader);
    stop(compute);
    backend.close();
    cache.close();
    kernels.close();
    tensors.close();
  }

  private static void stop(ExecutorService pool) {
    pool.shutdown();
    try {
      if (!pool.awaitTermination(5, TimeUnit.SECONDS)) {
        pool.shutdownNow();
      }
    } catch (InterruptedException e) {
      pool.shutdownNow();
      Thread.currentThread().interrupt();
    }
  }
}

package io.moecluster.gateway;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import io.moecluster.expert.ExpertNode;
import io.moecluster.expert.ExpertNodeSettings;
import io.moecluster.router.RouterNode;
import io.moecluster.router.RouterSettings;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.apache.pekko.actor.typed.ActorSystem;

/**
 * One cluster node with the expert, router and gateway roles on a checkpoint, every message
 * serialized, one compute thread each; its gateway is SERVING when {@link #start} returns.
 */
record OneNodeCluster(ActorSystem<Void> system, ExpertNode expertNode, RouterNode routerNode,
    GatewayFixture gateway) implements AutoCloseable {

  static OneNodeCluster start(Path model) {
    Config config =
        ConfigFactory.parseString(
                """
                moe.expert.model-dir = "%1$s"
                moe.expert.compute-threads = 1
                moe.router.model-dir = "%1$s"
                moe.router.compute-threads = 1
                moe.router.min-expert-nodes = 1
                moe.router.placement-retry-interval = 300ms
                pekko.cluster.sharding.retry-interval = 200ms
                """
                    .formatted(model.toString().replace("\\", "/")))
            .withFallback(TestClusters.config(List.of("expert", "router", "gateway")));
    ActorSystem<Void> system = TestClusters.start("moe", config);
    ExpertNode expertNode =
        ExpertNode.start(system, ExpertNodeSettings.fromConfig(system.settings().config()));
    RouterNode routerNode = RouterNode.start(system, RouterSettings.fromConfig(system.settings().config()));
    GatewayFixture gateway = GatewayFixture.start(system, GatewayFixture.settings(""), model);
    GatewayFixture.await("SERVING", Duration.ofSeconds(60), gateway.server::isServing);
    return new OneNodeCluster(system, expertNode, routerNode, gateway);
  }

  /** Stops the gateway, then the router and expert nodes, then the system. */
  @Override
  public void close() {
    gateway.close();
    routerNode.close();
    expertNode.close();
    TestClusters.stop(system);
  }
}

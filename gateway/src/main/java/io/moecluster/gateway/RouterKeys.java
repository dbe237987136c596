package io.moecluster.gateway;

import io.moecluster.proto.cluster.v1.RouterCommand;
import org.apache.pekko.actor.typed.receptionist.ServiceKey;

/**
 * The Receptionist key routers register under. Equal (same type and id) to
 * io.moecluster.router.RouterActor.SERVICE_KEY; kept here until router-node publishes it.
 */
final class RouterKeys {
  static final ServiceKey<RouterCommand> ROUTER =
      ServiceKey.create(RouterCommand.class, "moe-router");

  private RouterKeys() {}
}

package io.moecluster.expert;

import io.moecluster.proto.cluster.v1.ExpertCommand;
import org.apache.pekko.cluster.sharding.typed.ShardingEnvelope;
import org.apache.pekko.cluster.sharding.typed.ShardingMessageExtractor;

/**
 * Which shard an expert entity lives in: expert {@code e} of every layer goes to shard {@code e
 * mod number-of-shards}, so a shard is a column of the model.
 *
 * <p>Why columns: a layer's step waits for the slowest node among those that hold its routed
 * experts, so what matters is how each layer's experts are spread, not only how many entities a
 * node holds. When every shard holds the same experts of every layer, least-shard allocation,
 * which balances only the count of shards per node, balances every layer too: with {@code E}
 * experts a layer and {@code R} expert nodes each node holds {@code floor(E/R)} or {@code
 * ceil(E/R)} experts of each layer, whatever order the shards were allocated in. Hashing the ids
 * did not: for one-digit indices {@code "<layer>/<expert>".hashCode()} grows by one per expert and
 * by 961 per layer, so the 32 experts of the small preset fell into 11 of 64 shards and a node
 * could hold 5 of a layer's 8 experts while the other held 3.
 *
 * <p>The cost: at most {@code min(E, number-of-shards)} shards, so a model with {@code E} experts a
 * layer spreads over at most that many expert nodes, and a shard that moves carries an expert of
 * every layer.
 */
final class ExpertShards {
  private ExpertShards() {}

  /**
   * The shard base of an entity id: its expert index modulo {@code numberOfShards}. An id that is
   * not an expert entity's (none is ever sent) falls back to its hash rather than failing inside
   * the sharding machinery.
   */
  static int base(String entityId, int numberOfShards) {
    try {
      return ExpertEntity.parseEntityId(entityId).expert() % numberOfShards;
    } catch (IllegalArgumentException notAnExpertId) {
      return Math.floorMod(entityId.hashCode(), numberOfShards);
    }
  }

  /**
   * Envelopes to the shard of {@link #base}; with replicas, to the replica's sibling shard of
   * that base ({@link ReplicaShards#shardId}).
   */
  static final class Extractor extends ShardingMessageExtractor<ShardingEnvelope<ExpertCommand>, ExpertCommand> {
    private final int numberOfShards;
    private final boolean replicated;

    Extractor(int numberOfShards, boolean replicated) {
      this.numberOfShards = numberOfShards;
      this.replicated = replicated;
    }

    @Override
    public String entityId(ShardingEnvelope<ExpertCommand> envelope) {
      return envelope.entityId();
    }

    @Override
    public String shardId(String entityId) {
      return replicated ? ReplicaShards.shardId(entityId, numberOfShards)
          : Integer.toString(base(entityId, numberOfShards));
    }

    @Override
    public ExpertCommand unwrapMessage(ShardingEnvelope<ExpertCommand> envelope) {
      return envelope.message();
    }
  }
}

package io.moecluster.expert;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;

/**
 * The byte budget of the {@link ExpertWeightCache} as configured ({@code moe.expert.cache.budget}):
 * either a size ({@code 2GiB}, {@code 512MiB}) or a share ({@code 50%}) of the bytes of all the
 * experts this node could host, which is only known once the checkpoint is open.
 *
 * @param bytes the absolute budget, or -1 when {@code percent} applies
 * @param percent the share in percent (0-100], or -1 when {@code bytes} applies
 */
public record CacheBudget(long bytes, double percent) {
  /** Keeps every expert warm. */
  public static final CacheBudget ALL = new CacheBudget(-1, 100);

  public CacheBudget {
    if ((bytes < 0) == (percent < 0)) {
      throw new IllegalArgumentException("a cache budget is either bytes or a percentage");
    }
    if (percent > 100 || percent == 0) {
      throw new IllegalArgumentException("moe.expert.cache.budget must be a share in (0%, 100%], got " + percent + "%");
    }
  }

  public static CacheBudget ofBytes(long bytes) {
    return new CacheBudget(bytes, -1);
  }

  public static CacheBudget ofPercent(double percent) {
    return new CacheBudget(-1, percent);
  }

  /** Parses {@code path} of {@code c}: {@code "50%"} or a HOCON size ({@code 2GiB}, {@code 1048576}). */
  public static CacheBudget parse(Config c, String path) {
    String raw = c.getValue(path).unwrapped().toString().trim();
    if (raw.endsWith("%")) {
      try {
        return ofPercent(Double.parseDouble(raw.substring(0, raw.length() - 1).trim()));
      } catch (NumberFormatException e) {
        throw new IllegalArgumentException("moe.expert.cache.budget: '" + raw + "' is not a percentage like 50%");
      }
    }
    try {
      return ofBytes(c.getBytes(path));
    } catch (ConfigException e) {
      throw new IllegalArgumentException(
          "moe.expert.cache.budget must be a size (2GiB, 512MiB) or a share (50%), got '" + raw + "'");
    }
  }

  /** The budget in bytes, given the bytes of all the experts this node could host. */
  public long resolve(long allExpertBytes) {
    return bytes >= 0 ? bytes : (long) Math.floor(allExpertBytes * (percent / 100.0));
  }

  @Override
  public String toString() {
    return bytes >= 0 ? bytes + " bytes" : percent + "%";
  }
}

package io.moecluster.deploy.cli;

import java.io.IOException;
import java.io.InputStream;
import java.util.Properties;
import picocli.CommandLine.IVersionProvider;

/** The version of moe, from the properties file Maven fills in at build time. */
public final class MoeVersion {

  private static final String RESOURCE = "/io/moecluster/deploy/moe-version.properties";

  private MoeVersion() {}

  /**
   * The build's version; falls back to the jar manifest, then to "unknown" (running from an IDE
   * that does not filter resources).
   */
  public static String version() {
    try (InputStream in = MoeVersion.class.getResourceAsStream(RESOURCE)) {
      if (in != null) {
        Properties properties = new Properties();
        properties.load(in);
        String version = properties.getProperty("version", "");
        if (!version.isBlank() && !version.startsWith("${")) {
          return version;
        }
      }
    } catch (IOException e) {
      // Fall through to the manifest.
    }
    String fromManifest = MoeVersion.class.getPackage().getImplementationVersion();
    return fromManifest != null ? fromManifest : "unknown";
  }

  /** For {@code moe --version}. */
  public static final class Provider implements IVersionProvider {
    @Override
    public String[] getVersion() {
      return new String[] {"moe " + version()};
    }
  }
}

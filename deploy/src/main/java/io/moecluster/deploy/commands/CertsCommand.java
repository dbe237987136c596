package io.moecluster.deploy.commands;

import io.moecluster.gateway.security.DevCertificates;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code moe certs}: a throw-away CA with a server and a client certificate, for trying TLS, mutual
 * TLS and Artery TLS on a development machine. Keys are written unencrypted; production
 * certificates come from the organisation's own CA.
 */
@Command(name = "certs",
    description = {"For development only: write a new CA, a server and a client certificate (PEM) and PKCS#12 stores.",
        "The gateway takes the PEM files (--tls-cert/--tls-key/--tls-client-ca), clients --ca/--client-cert/"
            + "--client-key, Pekko Artery TLS the .p12 stores. Keys are unencrypted: not for production."})
public final class CertsCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--out", paramLabel = "DIR", required = true, description = "directory to write the files into")
  Path out;

  @Option(names = "--host", paramLabel = "NAME|IP", split = ",", defaultValue = "localhost,127.0.0.1",
      description = "names and addresses the server certificate is valid for (default: ${DEFAULT-VALUE})")
  List<String> hosts;

  @Option(names = "--days", description = "validity in days (default: ${DEFAULT-VALUE})", defaultValue = "365")
  int days;

  @Option(names = "--store-password", paramLabel = "PASSWORD", defaultValue = "changeit",
      description = "password of the PKCS#12 stores (default: ${DEFAULT-VALUE})")
  String storePassword;

  @Option(names = "--force", description = "overwrite files that exist")
  boolean force;

  @Override
  public Integer call() throws IOException {
    if (days < 1) {
      throw new IllegalArgumentException("--days must be >= 1, got " + days);
    }
    if (hosts.isEmpty() || hosts.stream().anyMatch(h -> h.isBlank() || h.contains(" "))) {
      throw new IllegalArgumentException("--host: give names or addresses without spaces, got " + hosts);
    }
    if (storePassword.length() < 6) {
      throw new IllegalArgumentException("--store-password: at least 6 characters (keytool's minimum)");
    }
    if (Files.exists(out) && !Files.isDirectory(out)) {
      throw new IllegalArgumentException("--out: " + out + " is not a directory");
    }
    if (!force) {
      for (String f : DevCertificates.FILES) {
        if (Files.exists(out.resolve(f))) {
          throw new IllegalArgumentException("--out: " + out.resolve(f) + " exists; pass --force to overwrite");
        }
      }
    }
    DevCertificates.writeAll(out, hosts, storePassword.toCharArray(), Duration.ofDays(days));
    PrintWriter w = spec.commandLine().getOut();
    Path d = out.toAbsolutePath().normalize();
    w.println("moe: wrote a development CA and certificates for " + String.join(", ", hosts) + " to " + d);
    for (String f : DevCertificates.FILES) {
      w.println("  " + d.resolve(f));
    }
    w.println("gateway: moe serve ... --tls-cert " + d.resolve("server.pem") + " --tls-key " + d.resolve("server-key.pem")
        + " [--tls-client-ca " + d.resolve("ca.pem") + "]");
    w.println("client:  moe client info --ca " + d.resolve("ca.pem") + " [--client-cert " + d.resolve("client.pem")
        + " --client-key " + d.resolve("client-key.pem") + "]");
    w.flush();
    return 0;
  }
}

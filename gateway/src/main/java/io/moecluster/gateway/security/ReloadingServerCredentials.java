package io.moecluster.gateway.security;

import io.grpc.ServerCredentials;
import io.grpc.TlsServerCredentials;
import io.grpc.util.AdvancedTlsX509KeyManager;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The gateway's TLS credentials, whose certificate and key are read again from their files at an
 * interval: a certificate renewed on disk (cert-manager, an ACME client) is served to the
 * connections that follow, without a restart; open connections keep the one they were made with.
 * The files are read again whenever either has changed (a renewal may keep its key), and the pair
 * is taken only when it passes the start-up checks (the key is the certificate's, the certificate
 * is within its validity): a renewal caught half done, or a wrong file, leaves the last good pair
 * in use with a warning in the log, and is read again once a file changes again.
 */
public final class ReloadingServerCredentials implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(ReloadingServerCredentials.class);

  private final GatewaySecurity.TlsFiles tls;
  private final AdvancedTlsX509KeyManager keys = new AdvancedTlsX509KeyManager();
  private final ScheduledExecutorService timer;
  private final ServerCredentials credentials;
  private FileTime certTime; // of the pair read last, taken or not; timer thread only after the first load
  private FileTime keyTime;

  private ReloadingServerCredentials(GatewaySecurity.TlsFiles tls, ScheduledExecutorService timer) throws IOException {
    this.tls = tls;
    this.timer = timer;
    load(); // checked by GatewaySecurity.fromConfig already: a failure here is a file that just changed
    TlsServerCredentials.Builder b = TlsServerCredentials.newBuilder().keyManager(keys);
    if (tls.clientCa().isPresent()) {
      b.trustManager(tls.clientCa().get().toFile()).clientAuth(TlsServerCredentials.ClientAuth.REQUIRE);
    }
    credentials = b.build();
  }

  /** Loads {@code tls}'s certificate and key, and looks at the files again at its reload interval. */
  public static ReloadingServerCredentials start(GatewaySecurity.TlsFiles tls) {
    Duration interval = tls.reloadInterval();
    ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread t = new Thread(r, "moe-tls-reload");
      t.setDaemon(true);
      return t;
    });
    try {
      ReloadingServerCredentials c = new ReloadingServerCredentials(tls, timer);
      timer.scheduleWithFixedDelay(c::reloadIfRenewed, interval.toMillis(), interval.toMillis(), TimeUnit.MILLISECONDS);
      return c;
    } catch (IOException | RuntimeException e) {
      timer.shutdownNow();
      throw new IllegalArgumentException("moe.gateway.tls: cannot load the certificate (" + e.getMessage() + ")");
    }
  }

  public ServerCredentials credentials() {
    return credentials;
  }

  /** Reads and checks both files, then serves them. */
  private void load() throws IOException {
    certTime = Files.getLastModifiedTime(tls.certChain());
    keyTime = Files.getLastModifiedTime(tls.privateKey());
    PemFiles.Identity identity = PemFiles.identity(tls);
    keys.updateIdentityCredentials(identity.chain().toArray(X509Certificate[]::new), identity.key());
  }

  private void reloadIfRenewed() {
    try {
      if (Files.getLastModifiedTime(tls.certChain()).equals(certTime)
          && Files.getLastModifiedTime(tls.privateKey()).equals(keyTime)) {
        return; // neither changed since they were read last
      }
      load();
      log.info("gateway: serving the renewed certificate of {}", tls.certChain());
    } catch (IOException | RuntimeException e) {
      log.warn("gateway: the renewed certificate in {} was not taken, the previous one stays: {}", tls.certChain(),
          e.getMessage());
    }
  }

  /** Stops looking at the files; the server keeps the pair it has. */
  @Override
  public void close() {
    timer.shutdownNow();
  }
}

package io.moecluster.gateway.security;

import java.io.IOException;
import java.io.OutputStream;
import java.math.BigInteger;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Date;
import java.util.List;
import javax.security.auth.x500.X500Principal;
import org.bouncycastle.asn1.x509.BasicConstraints;
import org.bouncycastle.asn1.x509.ExtendedKeyUsage;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.GeneralNames;
import org.bouncycastle.asn1.x509.KeyPurposeId;
import org.bouncycastle.asn1.x509.KeyUsage;
import org.bouncycastle.cert.X509v3CertificateBuilder;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.cert.jcajce.JcaX509ExtensionUtils;
import org.bouncycastle.cert.jcajce.JcaX509v3CertificateBuilder;
import org.bouncycastle.operator.OperatorCreationException;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;

/**
 * Issues a small private PKI for development and tests: a self-signed CA, and certificates it
 * signs for servers and clients (RSA 2048, SHA-256, both TLS usages, subject alternative names for
 * the given hosts). Writes them as PEM (certificate, PKCS#8 key) and as PKCS#12 stores, the forms
 * the gateway (PEM) and Pekko Artery (PKCS#12) read. Not a certificate authority for production:
 * keys are written unencrypted.
 */
public final class DevCertificates {
  private static final SecureRandom random = new SecureRandom();

  private DevCertificates() {}

  /** A certificate and its private key. */
  public record Issued(X509Certificate certificate, PrivateKey privateKey) {}

  /** A self-signed CA valid for {@code validity}. */
  public static Issued authority(String commonName, Duration validity) {
    KeyPair keys = rsa();
    X500Principal name = new X500Principal("CN=" + commonName);
    try {
      JcaX509ExtensionUtils ext = new JcaX509ExtensionUtils();
      X509v3CertificateBuilder b = builder(name, name, keys, validity)
          .addExtension(Extension.basicConstraints, true, new BasicConstraints(0))
          .addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.keyCertSign | KeyUsage.cRLSign))
          .addExtension(Extension.subjectKeyIdentifier, false, ext.createSubjectKeyIdentifier(keys.getPublic()));
      return new Issued(sign(b, keys.getPrivate()), keys.getPrivate());
    } catch (IOException | GeneralSecurityException e) {
      throw new IllegalStateException("cannot create the CA certificate", e);
    }
  }

  /**
   * A certificate signed by {@code ca} for {@code commonName}, usable by a TLS server and a TLS
   * client, with {@code hosts} (names or IP addresses) as subject alternative names.
   */
  public static Issued issue(Issued ca, String commonName, List<String> hosts, Duration validity) {
    KeyPair keys = rsa();
    try {
      JcaX509ExtensionUtils ext = new JcaX509ExtensionUtils();
      X509v3CertificateBuilder b = builder(
              ca.certificate().getSubjectX500Principal(), new X500Principal("CN=" + commonName), keys, validity)
          .addExtension(Extension.basicConstraints, true, new BasicConstraints(false))
          .addExtension(Extension.keyUsage, true,
              new KeyUsage(KeyUsage.digitalSignature | KeyUsage.keyEncipherment))
          .addExtension(Extension.extendedKeyUsage, false,
              new ExtendedKeyUsage(new KeyPurposeId[] {KeyPurposeId.id_kp_serverAuth, KeyPurposeId.id_kp_clientAuth}))
          .addExtension(Extension.authorityKeyIdentifier, false,
              ext.createAuthorityKeyIdentifier(ca.certificate()))
          .addExtension(Extension.subjectKeyIdentifier, false, ext.createSubjectKeyIdentifier(keys.getPublic()));
      if (!hosts.isEmpty()) {
        List<GeneralName> names = new ArrayList<>();
        for (String h : hosts) {
          names.add(isIpAddress(h) ? new GeneralName(GeneralName.iPAddress, h) : new GeneralName(GeneralName.dNSName, h));
        }
        b.addExtension(Extension.subjectAlternativeName, false, new GeneralNames(names.toArray(GeneralName[]::new)));
      }
      return new Issued(sign(b, ca.privateKey()), keys.getPrivate());
    } catch (IOException | GeneralSecurityException e) {
      throw new IllegalStateException("cannot issue the certificate of " + commonName, e);
    }
  }

  /** The files {@link #writeAll} writes, by name. */
  public static final List<String> FILES = List.of(
      "ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem",
      "server.p12", "client.p12", "truststore.p12");

  /**
   * Writes a CA, a server and a client certificate into {@code dir}: PEM files for the gateway and
   * its clients, and PKCS#12 stores (password {@code storePassword}) for Pekko Artery: {@code
   * server.p12}/{@code client.p12} hold a key and its chain, {@code truststore.p12} the CA.
   */
  public static void writeAll(Path dir, List<String> hosts, char[] storePassword, Duration validity)
      throws IOException {
    Files.createDirectories(dir);
    Issued ca = authority("moe-cluster development CA", validity);
    Issued server = issue(ca, "moe-cluster server", hosts, validity);
    Issued client = issue(ca, "moe-cluster client", List.of(), validity);
    writeCertificates(dir.resolve("ca.pem"), ca.certificate());
    writePrivateKey(dir.resolve("ca-key.pem"), ca.privateKey());
    writeCertificates(dir.resolve("server.pem"), server.certificate(), ca.certificate());
    writePrivateKey(dir.resolve("server-key.pem"), server.privateKey());
    writeCertificates(dir.resolve("client.pem"), client.certificate(), ca.certificate());
    writePrivateKey(dir.resolve("client-key.pem"), client.privateKey());
    writeKeyStore(dir.resolve("server.p12"), server, ca.certificate(), storePassword);
    writeKeyStore(dir.resolve("client.p12"), client, ca.certificate(), storePassword);
    writeTrustStore(dir.resolve("truststore.p12"), ca.certificate(), storePassword);
  }

  /** Writes certificates as PEM, in order (leaf first for a chain). */
  public static void writeCertificates(Path file, X509Certificate... certificates) throws IOException {
    StringBuilder pem = new StringBuilder();
    try {
      for (X509Certificate c : certificates) {
        pem.append(pem("CERTIFICATE", c.getEncoded()));
      }
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("cannot encode a certificate", e);
    }
    Files.writeString(file, pem, StandardCharsets.US_ASCII);
  }

  /** Writes a private key as unencrypted PKCS#8 PEM, readable by its owner only where possible. */
  public static void writePrivateKey(Path file, PrivateKey key) throws IOException {
    Files.writeString(file, pem("PRIVATE KEY", key.getEncoded()), StandardCharsets.US_ASCII);
    ownerOnly(file);
  }

  /** A PKCS#12 store with the key of {@code issued} and its chain (leaf, CA), alias "moe". */
  public static void writeKeyStore(Path file, Issued issued, X509Certificate ca, char[] password)
      throws IOException {
    try {
      KeyStore store = KeyStore.getInstance("PKCS12");
      store.load(null, null);
      store.setKeyEntry("moe", issued.privateKey(), password, new X509Certificate[] {issued.certificate(), ca});
      save(store, file, password);
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("cannot write the key store " + file, e);
    }
    ownerOnly(file);
  }

  /** A PKCS#12 store trusting {@code ca}, alias "moe-ca". */
  public static void writeTrustStore(Path file, X509Certificate ca, char[] password) throws IOException {
    try {
      KeyStore store = KeyStore.getInstance("PKCS12");
      store.load(null, null);
      store.setCertificateEntry("moe-ca", ca);
      save(store, file, password);
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("cannot write the trust store " + file, e);
    }
  }

  private static void save(KeyStore store, Path file, char[] password) throws IOException, GeneralSecurityException {
    try (OutputStream out = Files.newOutputStream(file)) {
      store.store(out, password);
    }
  }

  private static void ownerOnly(Path file) {
    try {
      Files.setPosixFilePermissions(file, java.nio.file.attribute.PosixFilePermissions.fromString("rw-------"));
    } catch (UnsupportedOperationException | IOException e) {
      // not a POSIX file system: leave the default permissions
    }
  }

  private static X509v3CertificateBuilder builder(X500Principal issuer, X500Principal subject, KeyPair keys,
      Duration validity) {
    Instant now = Instant.now();
    return new JcaX509v3CertificateBuilder(issuer, new BigInteger(64, random).abs().add(BigInteger.ONE),
        Date.from(now.minus(Duration.ofMinutes(5))), Date.from(now.plus(validity)), subject, keys.getPublic());
  }

  private static X509Certificate sign(X509v3CertificateBuilder builder, PrivateKey signer)
      throws GeneralSecurityException {
    try {
      return new JcaX509CertificateConverter().getCertificate(
          builder.build(new JcaContentSignerBuilder("SHA256withRSA").build(signer)));
    } catch (OperatorCreationException e) {
      throw new GeneralSecurityException(e);
    }
  }

  private static KeyPair rsa() {
    try {
      KeyPairGenerator g = KeyPairGenerator.getInstance("RSA");
      g.initialize(2048, random);
      return g.generateKeyPair();
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("the JDK has no RSA", e);
    }
  }

  private static boolean isIpAddress(String host) {
    if (!host.matches("[0-9.]+") && !host.contains(":")) {
      return false;
    }
    try {
      InetAddress.getByName(host); // a literal: no lookup
      return true;
    } catch (UnknownHostException e) {
      return false;
    }
  }

  private static String pem(String type, byte[] der) {
    return "-----BEGIN " + type + "-----\n"
        + Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII)).encodeToString(der)
        + "\n-----END " + type + "-----\n";
  }
}

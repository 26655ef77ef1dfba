"""An OpenSearch node from Maven Central jars: resolved once into ctxsync's cache, laid out as an OpenSearch home.

`deploy/opensearch/pom.xml` names the server (`org.opensearch:opensearch`) and the modules a node needs here:
`transport-netty4` (HTTP and transport), `analysis-common` (analyzers), `lang-painless` (scripts) and
`reindex` (delete by query, which `ctxsync erase` uses).
`ctxsync/maven_dist.py` copies them with their dependencies, flat, into `<ctxsync home>/opensearch/<version>/libs`.
The node's bootstrap loads modules only from `$OPENSEARCH_HOME/modules/<name>/` (one class loader each, with a
`plugin-descriptor.properties`), and refuses a module class that is also on the server's class path (jar hell),
so `home()` sorts the jars into `home/lib` and `home/modules/<name>` (hard links) and writes each module's
descriptor and security policy, as the distribution's tarball does. The node then runs as
`java -cp home/lib/* org.opensearch.bootstrap.OpenSearch` with a per-node config dir (ctxsync/servers.py).

`python -m ctxsync.opensearch_dist` resolves (if needed), lays out the home and prints its path.
"""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ctxsync.maven_dist import DEPLOY, MavenDist, MavenDistError, main

POM = DEPLOY / "opensearch" / "pom.xml"
OPENSEARCH = MavenDist("the OpenSearch node", POM, "opensearch.version", "opensearch-[0-9]*.jar")
MAIN_CLASS = "org.opensearch.bootstrap.OpenSearch"
HEAP = "512m"


@dataclass(frozen=True)
class Module:
    """One of the distribution's modules: which cached jars are its own, and its plugin class."""

    name: str
    classname: str
    jars: tuple[str, ...]             # glob patterns over libs/
    extends: tuple[str, ...] = ()     # modules whose class loader is its parent


MODULES = (
    Module("transport-netty4", "org.opensearch.transport.Netty4Plugin", ("transport-netty4-client-*.jar", "netty-*.jar")),
    Module("lang-painless", "org.opensearch.painless.PainlessPlugin",
           ("lang-painless-*.jar", "opensearch-scripting-painless-spi-*.jar", "antlr4-runtime-*.jar", "asm-*.jar")),
    # it extends lang-painless (its painless whitelist for analysis scripts), as in the distribution
    Module("analysis-common", "org.opensearch.analysis.common.CommonAnalysisPlugin", ("analysis-common-*.jar",),
           ("lang-painless",)),
    # _delete_by_query / _update_by_query / _reindex (and the REST client that remote reindex uses)
    Module("reindex", "org.opensearch.index.reindex.ReindexPlugin",
           ("reindex-client-*.jar", "opensearch-rest-client-*.jar", "httpclient-*.jar", "httpasyncclient-*.jar",
            "httpcore-*.jar", "commons-codec-*.jar", "commons-logging-*.jar"), ("lang-painless",)),
)
# The modules are OpenSearch's own code, trusted as the server is: the same grant the server's policy gives
# its own jars, instead of copying each module's hand-written list of permissions.
MODULE_POLICY = "grant {\n  permission java.security.AllPermission;\n};\n"


def version() -> str:
    return OPENSEARCH.version()


def resolve() -> Path:
    return OPENSEARCH.resolve()


def home() -> Path:
    """The OpenSearch home (lib/, modules/, empty plugins/) of the cached jars, laid out on first use; the
    layout is stamped with the pom's digest like the jars, so a changed pom lays it out again."""
    libs = resolve()
    root = libs.parent / "home"
    stamp = root / "layout.stamp"
    digest = (libs.parent / "pom.sha256").read_text()
    if stamp.is_file() and stamp.read_text() == digest:
        return root
    fresh = libs.parent / ".home-new"
    shutil.rmtree(fresh, ignore_errors=True)
    owned: set[Path] = set()
    for module in MODULES:
        target = fresh / "modules" / module.name
        target.mkdir(parents=True)
        jars = sorted({jar for pattern in module.jars for jar in libs.glob(pattern)})
        if not jars:
            raise MavenDistError(f"{libs} holds no jar of the OpenSearch module {module.name}",
                                 f"delete {libs.parent} and run: python -m ctxsync.opensearch_dist")
        for jar in jars:
            _link(jar, target / jar.name)
        owned.update(jars)
        (target / "plugin-descriptor.properties").write_text(_descriptor(module, version()))
        (target / "plugin-security.policy").write_text(MODULE_POLICY)
    (fresh / "lib").mkdir()
    (fresh / "plugins").mkdir()
    for jar in sorted(libs.glob("*.jar")):
        if jar not in owned:
            _link(jar, fresh / "lib" / jar.name)
    (fresh / "layout.stamp").write_text(digest)
    shutil.rmtree(root, ignore_errors=True)
    fresh.replace(root)
    return root


def _descriptor(module: Module, opensearch_version: str) -> str:
    return (f"description=OpenSearch module {module.name} (laid out by ctxsync from Maven Central jars)\n"
            f"version={opensearch_version}\nname={module.name}\nclassname={module.classname}\n"
            f"java.version=17\nopensearch.version={opensearch_version}\n"
            f"extended.plugins={','.join(module.extends)}\n")


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy2(source, target)


def write_config(conf: Path, data_dir: Path, http_port: int, transport_port: int) -> None:
    """The node's config dir: opensearch.yml (one loopback node, no disk watermarks: a full laptop disk must not
    turn the history read-only mid-test) and a console-only log4j2.properties (the server log is stdout)."""
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "opensearch.yml").write_text(
        "cluster.name: ctxsync\nnode.name: ctxsync-1\ndiscovery.type: single-node\nnetwork.host: 127.0.0.1\n"
        f"http.port: {http_port}\ntransport.port: {transport_port}\n"
        f"path.data: {data_dir / 'data'}\npath.logs: {data_dir / 'logs'}\n"
        "cluster.routing.allocation.disk.threshold_enabled: false\n"
        "action.destructive_requires_name: true\n")
    (conf / "log4j2.properties").write_text(
        "status = error\nappender.console.type = Console\nappender.console.name = console\n"
        "appender.console.layout.type = PatternLayout\n"
        "appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] [%node_name]%marker %m%n\n"
        "rootLogger.level = info\nrootLogger.appenderRef.console.ref = console\n")


def command(data_dir: Path, http_port: int, transport_port: int) -> list[str]:
    """The java command of a node whose config, data and logs live in `data_dir`."""
    root = home()
    conf = data_dir / "config"
    write_config(conf, data_dir, http_port, transport_port)
    # the flags of the distribution's jvm.options that matter here: Netty without Unsafe and without pooled
    # direct arenas (the node's own allocator manages buffers), Log4j shut down by the node, not by the JVM
    args = ["java", f"-Xms{HEAP}", f"-Xmx{HEAP}", "-XX:+UseG1GC", "-Dfile.encoding=UTF-8", "-Djava.awt.headless=true",
            "-Dio.netty.noUnsafe=true", "-Dio.netty.noKeySetOptimization=true",
            "-Dio.netty.recycler.maxCapacityPerThread=0", "-Dio.netty.allocator.numDirectArenas=0",
            "-Dlog4j.shutdownHookEnabled=false", "-Dlog4j2.disable.jmx=true", "-Dlog4j2.formatMsgNoLookups=true",
            "-Djava.locale.providers=SPI,COMPAT", f"-Djava.io.tmpdir={_tmp(data_dir)}",
            f"-Dopensearch.path.home={root}", f"-Dopensearch.path.conf={conf}",
            "-Dopensearch.distribution.type=tar"]
    if os.geteuid() == 0:
        args += _root_flags(data_dir)
    return [*args, "-cp", f"{root / 'lib'}/*", MAIN_CLASS]


def _root_flags(data_dir: Path) -> list[str]:
    """OpenSearch refuses to run as root, and asks that through JNA; as root (containers, CI) the node runs
    with JNA's native library unloadable, so that check, mlockall and the system call filter are skipped with
    a warning each. A loopback dev and test node loses nothing it uses; as any other user JNA works as usual."""
    empty = data_dir / "no-jna"
    empty.mkdir(exist_ok=True)
    return ["-Djna.nosys=true", "-Djna.noclasspath=true", f"-Djna.boot.library.path={empty}"]


def _tmp(data_dir: Path) -> Path:
    path = data_dir / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_node_cmdline(args: list[str]) -> bool:
    """True for the java command line of a node this module started (a pid's identity check)."""
    return MAIN_CLASS in args and any(arg.startswith("-Dopensearch.path.home=") for arg in args)


if __name__ == "__main__":
    sys.exit(main(home, "ctxsync.opensearch_dist"))

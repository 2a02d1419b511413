#!/usr/bin/env bash
# Resolve the pinned jar sets (deps/maven/<name>/pom.xml) from Maven Central into $TIDESCALE_CACHE/jars/<name>,
# skipping a set whose cached copy was made from an identical pom. Usage: deps/fetch-jars.sh NAME...
set -euo pipefail
cache="${TIDESCALE_CACHE:-$HOME/.cache/tidescale}"
here="$(cd "$(dirname "$0")" && pwd)"
for name in "$@"; do
  pom="$here/maven/$name/pom.xml"
  out="$cache/jars/$name"
  if [ -f "$out/pom.xml" ] && cmp -s "$pom" "$out/pom.xml" && ls "$out"/*.jar >/dev/null 2>&1; then
    echo "jars/$name: reused ($(ls "$out"/*.jar | wc -l) jars)"
    continue
  fi
  # pyspark already ships Scala, Hadoop and SLF4J: copy only what its Kafka connector adds.
  extra=()
  if [ "$name" = spark ]; then
    extra=(-DexcludeGroupIds=org.apache.hadoop,org.scala-lang,org.scala-lang.modules,org.lz4,org.xerial.snappy,org.slf4j,com.google.code.findbugs
           -DexcludeArtifactIds=spark-tags_2.13)
  fi
  rm -rf "$out.tmp"
  mvn -q -B "-Dmaven.repo.local=$cache/m2" -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
    "-DoutputDirectory=$out.tmp" "${extra[@]}"
  cp "$pom" "$out.tmp/pom.xml"
  rm -rf "$out" && mv "$out.tmp" "$out"
  echo "jars/$name: fetched ($(ls "$out"/*.jar | wc -l) jars)"
done

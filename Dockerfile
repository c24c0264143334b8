# The processor image, built offline: nothing is pulled. `make image` builds bin/processor-static (fully static,
# librdkafka inside), stages the host's CA bundle, and runs `DOCKER_BUILDKIT=0 docker build` (the classic builder:
# BuildKit would ask a registry about the base image even for scratch). The image holds the binary, the CA
# certificates librdkafka uses for ssl.ca.location by default, and a passwd entry for the non-root user.
# Where a registry is reachable, Dockerfile.multistage builds the same image from source in a golang builder.
FROM scratch
COPY deploy/docker/passwd deploy/docker/group /etc/
COPY .cache/image/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY bin/processor-static /processor
USER 65532:65532
EXPOSE 8080
ENV PROCESSOR_HTTP_ADDR=:8080
ENTRYPOINT ["/processor"]

import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// Why the metrics endpoint could not start.
public struct MetricsServerError: Error, CustomStringConvertible {
    public let description: String
}

/// The HTTP endpoint Prometheus scrapes: `GET /metrics` answers the text format 0.0.4 rendered by
/// `render` at that moment; any other path is a 404.
///
/// It runs on its own event-loop thread, so a scrape (or a client that connects and never
/// speaks) costs the training thread nothing. Idle connections are closed after a minute.
public final class MetricsServer: Sendable {
    public let host: String
    /// The port it listens on (the one the system chose when asked for port 0).
    public let port: Int
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel

    static let contentType = "text/plain; version=0.0.4; charset=utf-8"
    static let idleTimeout = TimeAmount.seconds(60)

    /// Listens on `host:port` at once: a port in use, or an address this machine does not
    /// have, is an error here, before any training starts.
    public init(host: String, port: Int, render: @escaping @Sendable () -> [UInt8]) throws {
        self.host = host
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: Self.idleTimeout))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(MetricsRequestHandler(render: render))
                }
            }
        do {
            channel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw MetricsServerError(description: Self.explain(error, host: host, port: port))
        }
        self.group = group
        self.port = channel.localAddress?.port ?? port
    }

    /// Stops listening and ends open connections.
    public func close() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }

    public var url: String { "http://\(host.contains(":") ? "[\(host)]" : host):\(port)/metrics" }

    private static func explain(_ error: any Error, host: String, port: Int) -> String {
        let address = "\(host):\(port)"
        let advice = "set another with --metrics-port or monitoring.prometheus_port (0 takes any free port)"
        if let error = error as? IOError {
            switch error.errnoCode {
            case EADDRINUSE:
                return "the metrics endpoint cannot listen on \(address): the port is in use (another run's endpoint, or another server); \(advice)"
            case EACCES:
                return "the metrics endpoint cannot listen on \(address): ports below 1024 need privileges; \(advice)"
            case EADDRNOTAVAIL:
                return "the metrics endpoint cannot listen on \(address): this machine has no such address; set --metrics-host or monitoring.prometheus_host to one of its addresses (127.0.0.1, 0.0.0.0 for all)"
            default: break
            }
        }
        return "the metrics endpoint cannot listen on \(address): \(error); check --metrics-host and --metrics-port (monitoring.prometheus_host, monitoring.prometheus_port)"
    }
}

/// One connection's requests, answered in order (the HTTP pipeline handler keeps pipelined
/// requests apart).
private final class MetricsRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let render: @Sendable () -> [UInt8]
    private var request: HTTPRequestHead?

    init(render: @escaping @Sendable () -> [UInt8]) {
        self.render = render
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): request = head
        case .body: break   // a scrape has no body; whatever comes is ignored
        case .end:
            guard let head = request else { return }
            request = nil
            respond(to: head, context: context)
        }
    }

    /// A malformed request (or a header past the parser's limit) ends the connection.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        let status: HTTPResponseStatus
        var body: [UInt8]
        var headers = HTTPHeaders()
        if path != "/metrics" {
            status = .notFound
            body = Array("ClipTune serves its metrics at /metrics\n".utf8)
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        } else if head.method != .GET && head.method != .HEAD {
            status = .methodNotAllowed
            body = Array("/metrics answers GET and HEAD\n".utf8)
            headers.add(name: "Allow", value: "GET, HEAD")
        } else {
            status = .ok
            body = render()
            headers.add(name: "Content-Type", value: MetricsServer.contentType)
        }
        headers.add(name: "Content-Length", value: String(body.count))
        if head.method == .HEAD { body = [] }
        let keepAlive = head.isKeepAlive
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if !body.isEmpty {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let sent = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            sent.whenComplete { _ in loopBound.value.close(promise: nil) }
        }
    }
}

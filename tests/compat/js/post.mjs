// Posts to one connection with the AWS SDK for JavaScript v3, unmodified, and prints the
// outcome as one JSON line: {"ok": true, "status": 200} or
// {"ok": false, "name": "InvalidSignatureException", "status": 403, "message": "..."}.
//
// Usage: node post.mjs ENDPOINT_URL CONNECTION_ID DATA [ACCESS_KEY_ID SECRET_ACCESS_KEY]
// Without keys the client is built as a backend on AWS builds it: credentials and region from
// the SDK's default chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and
// AWS_REGION, as Lambda sets them for the function's role).
import {
  ApiGatewayManagementApiClient,
  PostToConnectionCommand,
} from "@aws-sdk/client-apigatewaymanagementapi";

const [endpoint, connectionId, data, accessKeyId, secretAccessKey] = process.argv.slice(2);
const client = new ApiGatewayManagementApiClient(
  accessKeyId === undefined
    ? { endpoint, maxAttempts: 1 }
    : { endpoint, region: "us-east-1", credentials: { accessKeyId, secretAccessKey }, maxAttempts: 1 },
);

try {
  const output = await client.send(
    new PostToConnectionCommand({ ConnectionId: connectionId, Data: new TextEncoder().encode(data) }),
  );
  console.log(JSON.stringify({ ok: true, status: output.$metadata.httpStatusCode }));
} catch (error) {
  console.log(
    JSON.stringify({
      ok: false,
      name: error.name,
      status: error.$metadata?.httpStatusCode ?? null,
      message: error.message,
    }),
  );
}

//! CloudFormation and SAM templates: the SAM chat app, a `cdk synth` output with a REQUEST
//! authorizer and route responses, and a template of what cannot be carried over.

use sockway_gateway::config::{AuthorizerKind, IdentitySource, IntegrationConfig, RateLimit};
use sockway_import::{ImportError, ImportOptions, LambdaNames, Severity};

use crate::{at, check_comment, check_str, import, lambda, local, note_lines, parsed};

const SAM: &str = "sam-chat/template.yaml";
const CDK: &str = "cdk-chat/ChatStack.template.json";
const UNSUPPORTED: &str = "unsupported/template.yaml";

#[test]
fn sam_chat_app_for_sam_local() {
    let imported = import(SAM, &local("http://localhost:3001"));
    let (table, config) = parsed(&imported);

    check_str(&table, &["gateway", "stage"], "Dev");
    check_str(&table, &["gateway", "region"], "us-east-1");
    check_str(
        &table,
        &["gateway", "route_selection_expression"],
        "$request.body.action",
    );
    check_str(
        &table,
        &["gateway", "stage_variables", "tableName"],
        "chat_connections",
    );
    check_str(
        &table,
        &["gateway", "stage_variables", "greeting"],
        "welcome",
    );
    assert_eq!(
        at(&table, &["throttling", "rate_limit"]).as_integer(),
        Some(50)
    );
    assert_eq!(
        at(&table, &["throttling", "burst_limit"]).as_integer(),
        Some(100)
    );

    check_str(
        &table,
        &["routes", "$connect", "integration"],
        "ConnectInteg",
    );
    check_str(
        &table,
        &["routes", "$disconnect", "integration"],
        "DisconnectInteg",
    );
    check_str(
        &table,
        &["routes", "sendmessage", "integration"],
        "SendInteg",
    );
    assert_eq!(
        at(&table, &["routes", "sendmessage", "throttling_rate_limit"]).as_integer(),
        Some(10)
    );
    assert_eq!(
        at(&table, &["routes", "sendmessage", "throttling_burst_limit"]).as_integer(),
        Some(20)
    );
    check_str(&table, &["routes", "ping", "integration"], "PingInteg");
    assert_eq!(
        at(&table, &["routes", "ping", "route_response"]).as_bool(),
        Some(true)
    );

    // Local names: the logical ids `sam local start-lambda` serves.
    for (integration, function) in [
        ("ConnectInteg", "OnConnectFunction"),
        ("DisconnectInteg", "OnDisconnectFunction"),
        ("SendInteg", "SendMessageFunction"),
    ] {
        check_str(&table, &["integrations", integration, "type"], "lambda");
        check_str(&table, &["integrations", integration, "function"], function);
        check_str(
            &table,
            &["integrations", integration, "endpoint_url"],
            "http://localhost:3001",
        );
    }
    check_str(&table, &["integrations", "SendInteg", "timeout"], "5000ms");
    check_str(&table, &["integrations", "PingInteg", "type"], "mock");
    assert_eq!(
        at(&table, &["integrations", "PingInteg", "status_code"]).as_integer(),
        Some(200)
    );
    check_str(
        &table,
        &["integrations", "PingInteg", "body"],
        r#"{"action": "pong"}"#,
    );
    assert!(table.get("authorizer").is_none());

    check_comment(
        &imported.toml,
        "[routes.\"$connect\"]",
        "# from AWS::ApiGatewayV2::Route ConnectRoute",
    );
    check_comment(
        &imported.toml,
        "[integrations.SendInteg]",
        "# from AWS::ApiGatewayV2::Integration SendInteg",
    );
    check_comment(
        &imported.toml,
        "[throttling]",
        "# from AWS::ApiGatewayV2::Stage Stage",
    );
    assert!(
        imported.toml.contains(
            "# from AWS::ApiGatewayV2::Api ChatWebSocket, AWS::ApiGatewayV2::Stage Stage\n[gateway]"
        ),
        "{}",
        imported.toml
    );
    assert!(
        imported
            .toml
            .contains("# its environment: TABLE_NAME = \"chat_connections\"")
    );
    assert!(
        imported
            .toml
            .contains("# its environment: LOG_LEVEL = \"debug\"")
    );

    // The validated config, as the gateway will run it.
    assert_eq!(config.gateway.stage, "Dev");
    assert_eq!(
        config.gateway.stage_variables["tableName"],
        "chat_connections"
    );
    assert_eq!(
        config.throttling.route_default,
        Some(RateLimit {
            rate: 50.0,
            burst: 100
        })
    );
    assert_eq!(
        config.route("sendmessage").unwrap().throttling,
        Some(RateLimit {
            rate: 10.0,
            burst: 20
        })
    );
    let target = lambda(&config, "ConnectInteg");
    assert_eq!(target.function_name, "OnConnectFunction");
    assert_eq!(
        target.endpoint_url.as_ref().unwrap(),
        "http://localhost:3001/"
    );
    assert_eq!(
        config.route("ping").map(|route| route.route_response),
        Some(true)
    );
    assert_eq!(config.routes.len(), 4);

    // Only information: the DynamoDB table is outside the API.
    assert_eq!(
        note_lines(&imported.notes, Severity::Unsupported),
        Vec::<String>::new()
    );
    assert_eq!(
        note_lines(&imported.notes, Severity::Info),
        [
            "ConnectionsTable (AWS::DynamoDB::Table): not part of the WebSocket API: sockway neither \
          creates nor needs it (it stays on AWS, or runs in a local stand-in your functions are \
          pointed at)"
        ]
    );
}

#[test]
fn sam_parameters_conditions_and_deployed_names() {
    let options = ImportOptions {
        parameter_overrides: vec![
            ("Environment".to_owned(), "prod".to_owned()),
            ("ConnectionsTableName".to_owned(), "prod_connections".to_owned()),
        ],
        stack_name: Some("chat".to_owned()),
        region: Some("eu-west-1".to_owned()),
        stack_resources: Some(
            r#"{"StackResources": [
                {"LogicalResourceId": "OnConnectFunction", "PhysicalResourceId": "chat-OnConnectFunction-Xy12Ab34Cd56", "ResourceType": "AWS::Lambda::Function"}
            ]}"#
            .to_owned(),
        ),
        ..ImportOptions::default()
    };
    let imported = import(SAM, &options);
    let (table, config) = parsed(&imported);
    check_str(&table, &["gateway", "stage"], "Prod");
    check_str(&table, &["gateway", "region"], "eu-west-1");
    check_str(
        &table,
        &["gateway", "stage_variables", "tableName"],
        "prod_connections",
    );
    assert_eq!(
        at(&table, &["throttling", "burst_limit"]).as_integer(),
        Some(1000)
    );
    // --stack-resources, FunctionName (with ${AWS::StackName}), and CloudFormation's
    // generated name, which only the deployed stack knows.
    assert_eq!(
        lambda(&config, "ConnectInteg").function_name,
        "chat-OnConnectFunction-Xy12Ab34Cd56"
    );
    assert_eq!(
        lambda(&config, "SendInteg").function_name,
        "chat-send-message"
    );
    assert_eq!(
        lambda(&config, "DisconnectInteg").function_name,
        "chat-OnDisconnectFunction"
    );
    assert_eq!(lambda(&config, "SendInteg").endpoint_url, None);
    assert_eq!(
        lambda(&config, "SendInteg").region.as_deref(),
        Some("eu-west-1")
    );
    assert!(
        imported
            .toml
            .contains("# its environment: LOG_LEVEL = \"warn\"")
    );
    assert_eq!(
        note_lines(&imported.notes, Severity::Unsupported),
        [
            "OnDisconnectFunction (AWS::Serverless::Function).FunctionName: not set, so CloudFormation \
          named the function chat-OnDisconnectFunction-<random suffix>, which only the deployed \
          stack knows; pass --stack-resources with the output of `aws cloudformation \
          describe-stack-resources`, or --lambda-endpoint for a local endpoint. Written as \
          \"chat-OnDisconnectFunction\" for now"
        ]
    );

    // --lambda-names deployed with a local endpoint: LocalStack's names.
    let localstack = ImportOptions {
        lambda_endpoint: Some("http://localhost:4566".to_owned()),
        lambda_names: Some(LambdaNames::Deployed),
        stack_name: Some("chat".to_owned()),
        ..ImportOptions::default()
    };
    let (_, config) = parsed(&import(SAM, &localstack));
    assert_eq!(
        lambda(&config, "SendInteg").function_name,
        "chat-send-message"
    );
    assert_eq!(
        lambda(&config, "SendInteg").endpoint_url.as_ref().unwrap(),
        "http://localhost:4566/"
    );

    let error = sockway_import::import(
        SAM,
        &crate::fixture(SAM),
        &ImportOptions {
            parameter_overrides: vec![("Environment".to_owned(), "staging".to_owned())],
            ..ImportOptions::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "sam-chat/template.yaml: parameter Environment.AllowedValues: \"staging\" is not one of dev, prod"
    );
}

#[test]
fn cdk_synth_output_with_an_authorizer_and_route_responses() {
    let imported = import(CDK, &local("http://localhost:3001"));
    let (table, config) = parsed(&imported);
    check_str(&table, &["gateway", "stage"], "dev");
    check_str(
        &table,
        &["routes", "$connect", "integration"],
        "ChatApiconnectRouteConnectIntegration9C8D2A1F",
    );
    check_str(
        &table,
        &["routes", "$default", "integration"],
        "ChatApidefaultRouteDefaultIntegration7D6C5B4A",
    );
    check_str(
        &table,
        &["routes", "sendmessage", "integration"],
        "ChatApisendmessageRouteMessageIntegration4B3A2918",
    );
    assert_eq!(
        at(&table, &["routes", "$default", "route_response"]).as_bool(),
        Some(true)
    );
    assert_eq!(
        at(&table, &["routes", "sendmessage", "route_response"]).as_bool(),
        Some(true)
    );
    assert!(
        at(&table, &["routes", "$connect"])
            .get("route_response")
            .is_none()
    );
    check_str(
        &table,
        &[
            "integrations",
            "ChatApiconnectRouteConnectIntegration9C8D2A1F",
            "function",
        ],
        "ConnectHandler2FFD52D8",
    );
    check_str(
        &table,
        &[
            "integrations",
            "ChatApisendmessageRouteMessageIntegration4B3A2918",
            "function",
        ],
        "MessageHandler5F5E1C0B",
    );
    check_str(&table, &["authorizer", "type"], "lambda");
    check_str(&table, &["authorizer", "function"], "AuthHandler8A1D6C4E");
    check_str(
        &table,
        &["authorizer", "endpoint_url"],
        "http://localhost:3001",
    );
    assert_eq!(
        at(&table, &["authorizer", "identity_sources"])
            .as_array()
            .unwrap()[0]
            .as_str(),
        Some("route.request.querystring.token")
    );
    check_comment(
        &imported.toml,
        "[authorizer]",
        "# from AWS::ApiGatewayV2::Authorizer ChatApiAuthorizer3C2B1A0F",
    );
    check_comment(
        &imported.toml,
        "[routes.\"$connect\"]",
        "# from AWS::ApiGatewayV2::Route ChatApiconnectRoute5A4F3E2D",
    );
    assert!(
        imported
            .toml
            .contains("# its environment: TABLE_NAME = \"${ConnectionsTable8000B8A1}\"")
    );

    let authorizer = config.authorizer.as_ref().unwrap();
    let AuthorizerKind::Lambda(target) = &authorizer.kind else {
        panic!("{authorizer:?}");
    };
    assert_eq!(target.function_name, "AuthHandler8A1D6C4E");
    assert_eq!(
        authorizer.identity_sources,
        [IdentitySource::QueryString("token".to_owned())]
    );
    assert!(
        note_lines(&imported.notes, Severity::Unsupported).is_empty(),
        "{:?}",
        imported.notes
    );

    // Deployed: the authorizer's FunctionName; the others need the stack's physical ids.
    let imported = import(CDK, &ImportOptions::default());
    let (table, _) = parsed(&imported);
    check_str(&table, &["authorizer", "function"], "chat-authorizer");
    assert_eq!(
        note_lines(&imported.notes, Severity::Unsupported).len(),
        2,
        "{:?}",
        imported.notes
    );
}

#[test]
fn what_cannot_be_carried_over_is_named() {
    let imported = import(UNSUPPORTED, &ImportOptions::default());
    let (table, config) = parsed(&imported);
    assert_eq!(
        note_lines(&imported.notes, Severity::Unsupported),
        [
            "ConnectInteg (AWS::ApiGatewayV2::Integration).RequestParameters.integration.request.header.X-Order: \
             \"route.request.body.orderId\": not supported by sockway (see request_parameters in \
             docs/configuration.md); left out",
            "OrderInteg (AWS::ApiGatewayV2::Integration).IntegrationType: AWS service integrations \
             (AWS) cannot be carried over; use an HTTP or Lambda integration",
            "ConnectRoute (AWS::ApiGatewayV2::Route).ApiKeyRequired: the keys are not in the \
             template, so the route is imported without the check; add api_key_required = true, \
             [[api_keys]] and [[usage_plans]] (docs/access-control.md)",
            "ConnectRoute (AWS::ApiGatewayV2::Route).AuthorizationType: the keys that may sign are \
             not in the template, so the route is imported without it and connections are not \
             authenticated; add authorization_type = \"AWS_IAM\" and [[iam.credentials]] \
             (docs/access-control.md)",
            "OrderRoute (AWS::ApiGatewayV2::Route).Target: route order left out: its integration \
             OrderInteg could not be carried over",
        ]
    );
    assert!(
        note_lines(&imported.notes, Severity::Info).contains(
            &"Api (AWS::ApiGatewayV2::Api).ApiKeySelectionExpression: $request.header.x-api-key: not \
              carried over without keys; set gateway.api_key_selection_expression with \
              [[api_keys]] (docs/access-control.md)"
                .to_owned()
        ),
        "{:?}",
        imported.notes
    );
    // What could be carried over is.
    check_str(&table, &["gateway", "stage"], "live");
    check_str(
        &table,
        &["integrations", "ConnectInteg", "type"],
        "http_proxy",
    );
    check_str(&table, &["integrations", "ConnectInteg", "method"], "POST");
    let IntegrationConfig::HttpProxy(proxy) = &config.integrations["ConnectInteg"] else {
        panic!("http_proxy");
    };
    assert_eq!(proxy.request_parameters.len(), 1);
    assert!(config.route("order").is_none());

    // --strict: the same notes are errors.
    let error = sockway_import::import(
        UNSUPPORTED,
        &crate::fixture(UNSUPPORTED),
        &ImportOptions {
            strict: true,
            ..ImportOptions::default()
        },
    )
    .unwrap_err();
    let ImportError::Template { problems, .. } = &error else {
        panic!("{error}");
    };
    assert_eq!(problems.len(), 5);
    assert!(
        error.to_string().contains(
            "\nOrderInteg (AWS::ApiGatewayV2::Integration).IntegrationType: AWS service integrations (AWS) cannot be carried over; use an HTTP or Lambda integration\n"
        ),
        "{error}"
    );
}

#[test]
fn templates_that_are_not_one_websocket_api_are_refused() {
    let check = |text: &str, fragments: &[&str]| {
        let error = sockway_import::import("t.yaml", text, &ImportOptions::default()).unwrap_err();
        let message = error.to_string();
        for fragment in fragments {
            assert!(
                message.contains(fragment),
                "{fragment:?} not in {message:?}"
            );
        }
    };
    check(
        "Resources:\n  Http:\n    Type: AWS::ApiGatewayV2::Api\n    Properties: {ProtocolType: HTTP}\n",
        &["t.yaml: t.yaml.Resources: no AWS::ApiGatewayV2::Api with ProtocolType WEBSOCKET"],
    );
    check(
        "Resources: [\n",
        &["t.yaml: not a YAML or JSON document: line "],
    );
    check(
        "Parameters:\n  Name: {Type: String}\nResources:\n  Api:\n    Type: AWS::ApiGatewayV2::Api\n    \
         Properties: {ProtocolType: WEBSOCKET}\n  Route:\n    Type: AWS::ApiGatewayV2::Route\n    \
         Properties: {ApiId: !Ref Api, RouteKey: !Ref Name}\n  Other:\n    Type: AWS::ApiGatewayV2::Route\n    \
         Properties: {ApiId: !Ref Api, RouteKey: other, Target: !Sub 'integrations/${Integ}'}\n",
        &[
            "Route (AWS::ApiGatewayV2::Route).RouteKey: parameter \"Name\" has no Default; pass \
             --parameter-overrides Name=VALUE",
            "Other (AWS::ApiGatewayV2::Route).Target: Ref to \"Integ\", which is neither a parameter \
             nor a resource of the template",
        ],
    );
}

/// Function references other than `${Fn.Arn}`: a `:alias` after the ARN, an
/// `AWS::Lambda::Alias`, a literal ARN with `${stageVariables.x}` (kept for the gateway to
/// substitute, as AWS does), and an HTTP integration; parameters given as AWS CLI writes them.
#[test]
fn aliases_literal_arns_and_stage_variables_in_function_names() {
    let template = r#"
Parameters:
  Suffix: {Type: String}
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.op}
  Chat:
    Type: AWS::Lambda::Function
    Properties: {FunctionName: !Sub 'chat-${Suffix}'}
  ChatLive:
    Type: AWS::Lambda::Alias
    Properties: {FunctionName: !Ref Chat, Name: live, FunctionVersion: '3'}
  AliasInteg:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub 'arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${ChatLive}/invocations'
  QualifiedInteg:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub 'arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Chat.Arn}:beta/invocations'
  StageInteg:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: 'arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:${stageVariables.fn}/invocations'
  HttpInteg:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: HTTP
      IntegrationMethod: PUT
      IntegrationUri: http://backend.internal:9000/${stageVariables.path}
      TimeoutInMillis: 2500
  A: {Type: AWS::ApiGatewayV2::Route, Properties: {ApiId: !Ref Api, RouteKey: a, Target: !Sub 'integrations/${AliasInteg}'}}
  B: {Type: AWS::ApiGatewayV2::Route, Properties: {ApiId: !Ref Api, RouteKey: b, Target: !Sub 'integrations/${QualifiedInteg}'}}
  C: {Type: AWS::ApiGatewayV2::Route, Properties: {ApiId: !Ref Api, RouteKey: c, Target: !Sub 'integrations/${StageInteg}'}}
  D: {Type: AWS::ApiGatewayV2::Route, Properties: {ApiId: !Ref Api, RouteKey: d, Target: !Sub 'integrations/${HttpInteg}'}}
  Stage:
    Type: AWS::ApiGatewayV2::Stage
    Properties: {ApiId: !Ref Api, StageName: v1, StageVariables: {fn: chat-v1, path: events}}
"#;
    let parameter =
        sockway_import::parse_parameter_override("ParameterKey=Suffix,ParameterValue=eu").unwrap();
    let options = ImportOptions {
        parameter_overrides: vec![parameter],
        ..ImportOptions::default()
    };
    let imported = sockway_import::import("t.yaml", template, &options).unwrap();
    let (table, config) = parsed(&imported);
    check_str(
        &table,
        &["gateway", "route_selection_expression"],
        "$request.body.op",
    );
    check_str(
        &table,
        &["integrations", "AliasInteg", "function"],
        "chat-eu:live",
    );
    check_str(
        &table,
        &["integrations", "QualifiedInteg", "function"],
        "chat-eu:beta",
    );
    check_str(
        &table,
        &["integrations", "StageInteg", "function"],
        "arn:aws:lambda:us-east-1:123456789012:function:${stageVariables.fn}",
    );
    assert_eq!(
        lambda(&config, "AliasInteg").qualifier.as_deref(),
        Some("live")
    );
    // The gateway substituted the stage variable at load.
    assert_eq!(
        lambda(&config, "StageInteg").function_name,
        "arn:aws:lambda:us-east-1:123456789012:function:chat-v1"
    );
    let IntegrationConfig::HttpProxy(http) = &config.integrations["HttpInteg"] else {
        panic!("http_proxy");
    };
    assert_eq!(http.uri, "http://backend.internal:9000/events");
    assert_eq!(http.method, "PUT");
    assert_eq!(http.timeout, Some(std::time::Duration::from_millis(2500)));
    assert_eq!(
        note_lines(&imported.notes, Severity::Info),
        [
            "HttpInteg (AWS::ApiGatewayV2::Integration).IntegrationType: HTTP without templates passes \
          the message through: run as http_proxy"
        ]
    );
}

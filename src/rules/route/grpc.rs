//! Routes of gRPC methods and services, with their names checked.

use super::Route;

impl Route {
    /// Calls of one gRPC method: requests of any HTTP method to `/{service}/{method}`,
    /// where `service` is the full name of the service (its package and name,
    /// `"helloworld.Greeter"`) and `method` the method's name (`"SayHello"`), as in the
    /// `.proto` file. See [gRPC methods](Self#grpc-methods).
    pub fn grpc_method(service: &str, method: &str) -> Self {
        let invalid = check_grpc_service(service)
            .and_then(|()| check_grpc_name("gRPC method name", method))
            .err();
        Route {
            method: None,
            template: format!("/{service}/{method}"),
            invalid,
        }
    }

    /// Calls of every method of a gRPC service: requests of any HTTP method to
    /// `/{service}/…`, where `service` is the service's full name (`"helloworld.Greeter"`,
    /// `"grpc.health.v1.Health"`). Its template is `/{service}/{*method}`, so a key
    /// [`PathParam::new("method")`](crate::rules::key::PathParam) reads the method's name.
    /// See [gRPC methods](Self#grpc-methods).
    pub fn grpc_service(service: &str) -> Self {
        Route {
            method: None,
            template: format!("/{service}/{{*method}}"),
            invalid: check_grpc_service(service).err(),
        }
    }
}

/// A gRPC service's full name is identifiers separated by dots (`helloworld.Greeter`).
fn check_grpc_service(service: &str) -> Result<(), String> {
    if service.contains('/') {
        return Err(format!(
            "gRPC service name {service:?} contains '/': give the full service name \
             (\"package.Service\") and the method apart, as Route::grpc_method(\"package.Service\", \"Method\")"
        ));
    }
    service
        .split('.')
        .try_for_each(|part| check_grpc_name("service name part", part))
        .map_err(|e| format!("gRPC service name {service:?}: {e}"))
}

/// A gRPC name (a method, a part of a service name) is an identifier: ASCII letters, digits
/// and `_`, not starting with a digit.
fn check_grpc_name(what: &str, name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?} is not an identifier (ASCII letters, digits and '_', not \
             starting with a digit)"
        ))
    }
}
